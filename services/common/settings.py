"""Settings from the environment.

Every setting of the platform is declared once here, with its default and its meaning; the
README's settings table is generated from this list (``python -m services.common.settings``).
A value set in the environment always wins over the default.
"""
from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Setting:
    name: str
    default: str | None
    help: str


_LOCAL_PG = "postgresql+psycopg2://postgres@127.0.0.1:5432/flattr"

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "AMQP_URI",
        "amqp://guest:guest@127.0.0.1:5672//",
        "RabbitMQ connection for RPC and events; the nodes of a cluster separated by `;`, tried in turn when one goes",
    ),
    Setting(
        "BROKER_QUEUE_TYPE",
        "classic",
        "`classic` or `quorum`: the type of the event, RPC request, click request and dead-letter queues (`quorum` on a cluster; switching needs the old queues deleted, see the README)",
    ),
    Setting(
        "BROKER_HEARTBEAT",
        "5",
        "seconds between AMQP heartbeats; a broker node silent for two of them (frozen, cut off) is left for another",
    ),
    Setting("ACCOUNTS_DATABASE_URL", _LOCAL_PG, "accounts service database (schema `accounts`)"),
    Setting("CLICKS_DATABASE_URL", _LOCAL_PG, "clicks service database (schema `clicks`)"),
    Setting("SETTLEMENT_DATABASE_URL", _LOCAL_PG, "settlement service database (schema `settlement`)"),
    Setting(
        "FLATTR_ADMIN_TOKEN",
        None,
        "bearer token for `/admin` endpoints (32+ random characters, else the gateway will not start); unset disables them",
    ),
    Setting(
        "FLATTR_RATE_LIMITS",
        "on",
        "`on`, `off` (benchmarks), or overrides of the defaults `token=5000/hour;address=1000/hour;signup=100/hour;"
        "login=10/minute;oauth=30/minute;admin=10/minute` (`login`, `oauth`, `admin`: failures per address, "
        "wrong passwords at `/login`, refused code exchanges, wrong admin tokens); per-account password delays stay on",
    ),
    Setting(
        "FLATTR_RATE_LIMIT_STORAGE",
        "redis://127.0.0.1:6379/0",
        "store of the rate limits and password throttles, shared by every gateway process and replica "
        "(`memory://` keeps them per process: one gateway process only)",
    ),
    Setting(
        "FLATTR_TRUSTED_PROXIES",
        "0",
        "how many proxies in front of the gateway set `X-Forwarded-For`/`-Proto` (their last N entries are trusted); "
        "0 ignores those headers, so clients cannot choose the address they are limited by",
    ),
    Setting(
        "FLATTR_SECRET_KEY",
        None,
        "signs session cookies and CSRF tokens: required, 32+ random characters, the same for every gateway process (`make dev` makes one)",
    ),
    Setting(
        "FLATTR_PUBLIC_URL",
        None,
        "the platform's public base address (`https://flattr.example.org`), required: every link is built from it, never from "
        "the request's Host header; `https` makes the session cookie `Secure` (`make dev` sets its own)",
    ),
    Setting(
        "FLATTR_DEVELOPMENT",
        "off",
        "`on` lets the gateway start with weak or missing secrets and no `FLATTR_PUBLIC_URL` (links then point at "
        "`http://127.0.0.1:GATEWAY_PORT`): a machine of one's own only",
    ),
    Setting("GATEWAY_HOST", "127.0.0.1", "address the gateway listens on"),
    Setting("GATEWAY_PORT", "8000", "port the gateway listens on"),
    Setting("GATEWAY_WORKERS", "2", "gateway processes (each serves its connections from green threads)"),
    Setting("RPC_POOL_SIZE", "8", "standalone RPC proxies per gateway process"),
    Setting("RPC_TIMEOUT", "10", "seconds before an RPC is answered with 503"),
    Setting(
        "REQUEST_DEADLINE",
        "10",
        "seconds within which every gateway request ends: its answer, or 503 with `Retry-After`; the deadline travels with the RPC or click",
    ),
    Setting("RPC_WORKERS", "20", "concurrent RPCs per service process"),
    Setting("EVENT_WORKERS", "10", "concurrent event handlers and timers per service process, apart from its RPCs"),
    Setting(
        "TOKEN_CACHE_SECONDS",
        "300",
        "how long the gateway trusts a checked bearer token while it hears revocations (a revoked token stops working at once)",
    ),
    Setting(
        "TOKEN_CACHE_OFFLINE_SECONDS",
        "10",
        "how long the gateway trusts a checked bearer token while it cannot hear revocations (broker away)",
    ),
    Setting("OUTBOX_POLL_SECONDS", "0.5", "how often the outbox relay looks for unsent events it was not woken for"),
    Setting("PAYMENT_PROVIDER", "sandbox", "payment provider adapter for deposits and payouts (`sandbox` approves all but magic amounts)"),
    Setting("MAX_DEPOSIT_CENTS", "1000000", "largest single deposit"),
    Setting("MIN_PAYOUT_CENTS", "1000", "smallest payout a creator can request"),
    Setting("CLICK_BATCH_SIZE", "500", "most click requests a worker resolves in one statement and one commit"),
    Setting("CLICK_BATCH_WAIT_MS", "5", "how long a worker waits to fill a batch once it has a request"),
    Setting("CLICK_WORKERS", "1", "click workers `make dev` starts (compose and Kubernetes scale theirs on their own)"),
    Setting(
        "CLICK_RETENTION_PERIODS",
        "12",
        "sealed periods whose clicks stay in the clicks table; older settled periods are archived to files by "
        "`python -m services.clicks.ops archive` (nothing is archived unless that command runs)",
    ),
    Setting("CLICK_ARCHIVE_DIR", "var/click-archive", "where `python -m services.clicks.ops archive` writes archived periods' clicks"),
    Setting("CLICK_TIMEOUT", "10", "seconds the gateway waits for a click's answer before answering 503"),
    Setting(
        "COUNTS_ANNOUNCE_SECONDS",
        "0.25",
        "how often the clicks service tells accounts the new click counts (the `flattrs*` and `trend` sorts lag by about this much)",
    ),
    Setting("BUTTON_CACHE_SECONDS", "3", "how long the gateway reuses a thing's count for buttons and badges"),
    Setting("OUTBOX_RELAY", "on", "`off` keeps a service from relaying its outbox (events wait in the table until a relay runs)"),
    Setting(
        "CLAIM_FETCH_TIMEOUT",
        "5",
        "seconds an ownership check may take to fetch a page, redirects included (a host check fetches twice)",
    ),
    Setting("CLAIM_MAX_BYTES", "1048576", "largest page a claim check reads; a larger page is refused"),
    Setting(
        "CLAIM_ALLOW_PRIVATE_ADDRESSES",
        "off",
        "`on` lets ownership checks fetch private, loopback and link-local addresses over http and on any port "
        "(hosts are then read over http and named with their port: tests and local demos only)",
    ),
    Setting("CLAIM_WORKERS", "4", "ownership checks (claims, host verifications) run at once per accounts process, apart from its RPCs"),
    Setting("CLAIM_CHECKS_PER_HOUR", "20", "ownership checks one user may ask for in an hour"),
    Setting("CLAIM_VERDICT_SECONDS", "60", "how long a failed ownership check is answered again as it was, without fetching"),
    Setting(
        "CLAIM_ANSWER_SECONDS",
        "6",
        "how long the gateway waits for an ownership check's outcome before answering 202 (pending) for the client to poll",
    ),
    Setting(
        "TOTP_ENCRYPTION_KEYS",
        None,
        "comma-separated Fernet keys sealing users' two-factor secrets in the accounts database (the first seals, all open: "
        "rotate by putting a new key first); unset: two-factor set-up is refused. Make one with "
        "`python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())'`",
    ),
    Setting("SETTLEMENT_FEE_BPS", "1000", "platform fee on each reader's period amount, in basis points (1000 = 10%), rounded down to the cent"),
    Setting("SETTLEMENT_NO_CLICKS_POLICY", "rollover", "readers without clicks in a period: `rollover` (nothing charged) or `charity` (their budget goes to the charity account)"),
    Setting("SETTLEMENT_CHUNK_ROWS", "250000", "clicks moved from the clicks service to settlement per request"),
    Setting("ESCROW_HOLD_DAYS", "180", "days an unclaimed thing's escrow waits for its creator before it is refunded to the readers"),
    Setting("LOG_LEVEL", "INFO", "log level of every process"),
    Setting("LOG_FORMAT", "text", "`text` or `json` (one JSON object a line) for the log lines of every process"),
    Setting("SMTP_HOST", "127.0.0.1", "the SMTP server accounts sends all mail through (`make dev` runs a local one)"),
    Setting("SMTP_PORT", "1025", "its port"),
    Setting("SMTP_SECURITY", "none", "`none`, `starttls` or `tls` (SMTP over TLS from the first byte)"),
    Setting("SMTP_USERNAME", None, "SMTP login, if the server wants one"),
    Setting("SMTP_PASSWORD", None, "SMTP password"),
    Setting("SMTP_TIMEOUT", "10", "seconds an SMTP connection or command may take"),
    Setting("MAIL_FROM", "Flattr <flattr@localhost>", "the sender of every mail"),
    Setting("MAIL_RELAY", "on", "`off` keeps a service from sending its queued mail (it waits in `accounts.mail_queue`)"),
    Setting("MAIL_GIVE_UP_HOURS", "72", "a mail the SMTP server keeps refusing is retried (with growing pauses) this long, then marked failed"),
    Setting("MAIL_CATCHER_DIR", "var/mail", "where `make dev`'s local SMTP server writes the mails it receives (one `.eml` file each)"),
)

_BY_NAME = {s.name: s for s in SETTINGS}


def get(name: str, environ: dict | None = None) -> str | None:
    """The value of a declared setting: the environment's if set, else the default."""
    if name not in _BY_NAME:
        raise KeyError(f"undeclared setting {name}")
    env = os.environ if environ is None else environ
    value = env.get(name)
    return value if value not in (None, "") else _BY_NAME[name].default


def setting(config: dict, name: str) -> str | None:
    """A setting as a nameko service sees it: its container config (tests pass overrides there)
    first, then the environment and the default."""
    value = config.get(name)
    return str(value) if value not in (None, "") else get(name)


def get_int(name: str) -> int:
    return int(get(name))


def get_float(name: str) -> float:
    return float(get(name))


def defaults_for_child(environ: dict | None = None) -> dict[str, str]:
    """Environment for a child process: every default filled in, the caller's values kept."""
    env = dict(os.environ if environ is None else environ)
    for s in SETTINGS:
        if not env.get(s.name) and s.default is not None:
            env[s.name] = s.default
    return env


def markdown_table() -> str:
    rows = ["| variable | default | meaning |", "| --- | --- | --- |"]
    for s in SETTINGS:
        default = f"`{s.default}`" if s.default is not None else "(unset)"
        rows.append(f"| `{s.name}` | {default} | {s.help} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
