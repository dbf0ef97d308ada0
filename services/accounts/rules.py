"""Domain rules of accounts and the things catalog: plain functions, no broker, no database."""
from __future__ import annotations

import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from services.common.errors import InvalidParameters
from services.common.things import MAX_URL, TITLE_LENGTH, USERNAME_RULE, BadAutoSubmit, auto_submit_from_url, is_username

CATEGORIES = (
    ("text", "Text"),
    ("images", "Images"),
    ("video", "Video"),
    ("audio", "Audio"),
    ("software", "Software"),
    ("people", "People"),
    ("rest", "Other"),
)
CATEGORY_IDS = frozenset(c for c, _ in CATEGORIES)

LANGUAGES = (
    ("sq_AL", "Albanian"), ("ar_DZ", "Arabic"), ("be_BY", "Belarusian"), ("bg_BG", "Bulgarian"),
    ("ca_ES", "Catalan"), ("zh_CN", "Chinese"), ("hr_HR", "Croatian"), ("cs_CZ", "Czech"),
    ("da_DK", "Danish"), ("nl_NL", "Dutch"), ("en_GB", "English"), ("et_EE", "Estonian"),
    ("fi_FI", "Finnish"), ("fr_FR", "French"), ("de_DE", "German"), ("el_GR", "Greek"),
    ("iw_IL", "Hebrew"), ("hi_IN", "Hindi"), ("hu_HU", "Hungarian"), ("is_IS", "Icelandic"),
    ("in_ID", "Indonesian"), ("ga_IE", "Irish"), ("it_IT", "Italian"), ("ja_JP", "Japanese"),
    ("ko_KR", "Korean"), ("lv_LV", "Latvian"), ("lt_LT", "Lithuanian"), ("mk_MK", "Macedonian"),
    ("ms_MY", "Malay"), ("mt_MT", "Maltese"), ("no_NO", "Norwegian"), ("pl_PL", "Polish"),
    ("pt_PT", "Portuguese"), ("ro_RO", "Romanian"), ("ru_RU", "Russian"), ("sr_RS", "Serbian"),
    ("sk_SK", "Slovak"), ("sl_SI", "Slovenian"), ("es_ES", "Spanish"), ("sv_SE", "Swedish"),
    ("th_TH", "Thai"), ("tr_TR", "Turkish"), ("uk_UA", "Ukrainian"), ("vi_VN", "Vietnamese"),
)
LANGUAGE_IDS = frozenset(code for code, _ in LANGUAGES)

SCOPES = frozenset({"flattr", "thing", "email", "extendedread"})
# Money moves with these (budget, wallet and deposits; revenue and payouts): a user's own personal
# tokens may have them, a client application's token never.
MONEY_SCOPES = frozenset({"wallet", "payout"})

# Syntax only (no DNS): one @, a local part without spaces, a dotted domain.
EMAIL_RE = re.compile(r"^[^@\s]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MIN_BUDGET_CENTS = 200
PROFILE_FIELDS = {"firstname": 100, "lastname": 100, "avatar": 2000, "about": 1000, "city": 100, "country": 100}


def _text(value, field: str) -> str:
    if not isinstance(value, str):
        raise InvalidParameters(f"{field} must be a string")
    if not is_storable(value):
        raise InvalidParameters(f"{field} is not valid text")
    return value


def validate_username(value) -> str:
    value = _text(value, "username")
    if not is_username(value):
        raise InvalidParameters(f"username must be {USERNAME_RULE}")
    return value


def validate_email(value) -> str:
    value = _text(value, "email").strip()
    if len(value) > 254 or not EMAIL_RE.match(value):
        raise InvalidParameters("email is not a valid address")
    return value


def validate_password(value) -> str:
    value = _text(value, "password")
    if len(value) < MIN_PASSWORD:
        raise InvalidParameters(f"password must have at least {MIN_PASSWORD} characters")
    if len(value) > MAX_PASSWORD:
        raise InvalidParameters(f"password must have at most {MAX_PASSWORD} characters")
    return value


def validate_profile(fields: dict) -> dict:
    out = {}
    for name, limit in PROFILE_FIELDS.items():
        if fields.get(name) is not None:
            value = _text(fields[name], name)
            if len(value) > limit:
                raise InvalidParameters(f"{name} must have at most {limit} characters")
            out[name] = value
    return out


def validate_budget(amount, maximum: int) -> int:
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise InvalidParameters("amount must be an integer number of cents")
    if amount < MIN_BUDGET_CENTS:
        raise InvalidParameters(f"the monthly budget is at least {MIN_BUDGET_CENTS} cents")
    if amount > maximum:
        raise InvalidParameters(f"the monthly budget is at most {maximum} cents")
    return amount


def parse_scopes(value, allowed: frozenset = SCOPES) -> list[str]:
    """Space-separated scopes (commas tolerated); unknown scopes are refused."""
    if value is None or value == "":
        return []
    value = _text(value, "scope")
    scopes = sorted({s for s in re.split(r"[\s,]+", value) if s})
    unknown = [s for s in scopes if s not in allowed]
    if unknown:
        raise InvalidParameters(f"unknown scope: {' '.join(unknown)}")
    return scopes


def parse_personal_scopes(value) -> list[str]:
    """A personal token's scopes: the money scopes too, and at least one (a token that can do
    nothing is a mistake, and a scope-less token once meant one that could move money)."""
    scopes = parse_scopes(value, SCOPES | MONEY_SCOPES)
    if not scopes:
        raise InvalidParameters(f"scope is required: one or more of {' '.join(sorted(SCOPES | MONEY_SCOPES))}")
    return scopes


LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
# schemes a browser acts on itself: never where a code is sent
NOT_PRIVATE_USE = frozenset({"javascript", "data", "file", "vbscript", "about", "blob", "filesystem", "ftp", "ws", "wss", "mailto"})
PRIVATE_USE_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*$")


def validate_redirect_uri(value, confidential: bool) -> str:
    """Where a client application's codes are sent (RFC 8252): https, http to this machine
    (loopback), or the app's own private-use scheme (``com.example.app:/cb``, ``gpodder://...``),
    for any client; plain http to another host only for a client with a secret, without which an
    intercepted code is useless. No fragment (RFC 6749 3.1.2)."""
    value = _text(value, "redirect_uri").strip()
    if not value or len(value) > MAX_URL:
        raise InvalidParameters(f"redirect_uri is required, at most {MAX_URL} characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise InvalidParameters("redirect_uri is not a valid URI") from None
    scheme = parts.scheme.lower()
    if parts.fragment or "#" in value:
        raise InvalidParameters("redirect_uri must not have a fragment")
    if scheme == "https" and parts.hostname:
        return value
    if scheme == "http" and parts.hostname:
        if parts.hostname in LOOPBACK_HOSTS or confidential:
            return value
        raise InvalidParameters("plain http to another host is only for applications with a secret: use https, a loopback address or the app's own scheme")
    if PRIVATE_USE_SCHEME.match(scheme) and scheme not in NOT_PRIVATE_USE | {"http", "https"}:
        return value
    raise InvalidParameters("redirect_uri must be https, http to a loopback address, or the app's own scheme (RFC 8252)")


def is_plain_http_to_another_host(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme.lower() == "http" and parts.hostname not in LOOPBACK_HOSTS


def validate_url(value, field: str = "url") -> str:
    value = _text(value, field).strip()
    if not value:
        raise InvalidParameters(f"{field} is required")
    if len(value) > MAX_URL:
        raise InvalidParameters(f"{field} must have at most {MAX_URL} characters")
    try:
        parts = urlsplit(value)
    except ValueError:
        raise InvalidParameters(f"{field} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidParameters(f"{field} must be an http or https URL")
    return value


def parse_tags(value) -> list[str]:
    """Tags arrive as a comma-separated string (Flattr) or a list (JSON clients)."""
    if value is None:
        return []
    if isinstance(value, str):
        items = value.split(",")
    elif isinstance(value, list):
        items = value
    else:
        raise InvalidParameters("tags must be a comma-separated string")
    tags = []
    for item in items:
        tag = _text(item, "tags").strip()
        if not tag:
            continue
        if len(tag) > 64:
            raise InvalidParameters("a tag has at most 64 characters")
        if tag not in tags:
            tags.append(tag)
    if len(tags) > 30:
        raise InvalidParameters("at most 30 tags")
    return tags


def validate_thing_fields(fields: dict, *, creating: bool) -> dict:
    """Checks and normalises the writable fields of a thing. ``url`` is checked by the caller."""
    out = {}
    if "title" in fields or creating:
        title = fields.get("title")
        if title is None and creating:
            raise InvalidParameters("title is required")
        title = _text(title, "title").strip()
        if not TITLE_LENGTH[0] <= len(title) <= TITLE_LENGTH[1]:
            raise InvalidParameters(f"title must be {TITLE_LENGTH[0]} to {TITLE_LENGTH[1]} characters")
        out["title"] = title
    if fields.get("description") is not None:
        description = _text(fields["description"], "description")
        if len(description) > 1000:
            raise InvalidParameters("description must have at most 1000 characters")
        out["description"] = description
    if fields.get("category") is not None:
        if fields["category"] not in CATEGORY_IDS:
            raise InvalidParameters(f"category must be one of {', '.join(sorted(CATEGORY_IDS))}")
        out["category"] = fields["category"]
    if fields.get("language") is not None:
        if fields["language"] not in LANGUAGE_IDS:
            raise InvalidParameters("language must be one of the languages list (GET /rest/v2/languages)")
        out["language"] = fields["language"]
    if "tags" in fields:
        out["tags"] = parse_tags(fields["tags"])
    if fields.get("hidden") is not None:
        if not isinstance(fields["hidden"], bool):
            raise InvalidParameters("hidden must be a boolean")
        out["hidden"] = fields["hidden"]
    if fields.get("image") is not None:
        image = _text(fields["image"], "image")
        if image:
            validate_url(image, "image")
        out["image"] = image
    return out


def auto_submit(url: str):
    """The auto-submit request ``url`` makes (``services.common.things.AutoSubmit``, with
    ``hidden`` as a boolean), or None for any other URL; a broken one is ``InvalidParameters``."""
    try:
        auto = auto_submit_from_url(url)
    except BadAutoSubmit as exc:
        raise InvalidParameters(f"not a valid auto-submit URL: {exc}") from None
    if auto is not None and "hidden" in auto.fields:
        fields = dict(auto.fields, hidden=auto.fields["hidden"].strip().lower() in ("1", "true"))
        auto = type(auto)(username=auto.username, url=auto.url, fields=fields)
    return auto


@dataclass(frozen=True)
class TagQuery:
    """``a&b|!c``: OR of groups, each an AND of required tags and excluded tags (``&`` binds tighter)."""

    groups: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...]


def parse_tag_query(value: str) -> TagQuery:
    groups = []
    for group in value.split("|"):
        required, excluded = [], []
        for term in re.split(r"[&,]", group):
            term = term.strip()
            if not term:
                continue
            if term.startswith("!"):
                name = term[1:].strip()
                if name:
                    excluded.append(name)
            else:
                required.append(term)
        if required or excluded:
            groups.append((tuple(required), tuple(excluded)))
    if not groups:
        raise InvalidParameters("tags must name at least one tag")
    return TagQuery(tuple(groups))


def is_storable(value) -> bool:
    """Text PostgreSQL can store: no NUL, no lone surrogate."""
    if not isinstance(value, str) or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def popularity(sort: str) -> str:
    """The SQL score of a flattr sort over ``thing_daily_counts c`` (days are UTC dates).
    ``trend`` weighs the last 30 days' clicks by recency: a click today counts 1, a week ago 1/8."""
    today = "(now() AT TIME ZONE 'UTC')::date"
    return {
        "flattrs_month": f"sum(c.flattrs) FILTER (WHERE c.day >= date_trunc('month', {today})::date)",
        "flattrs_week": f"sum(c.flattrs) FILTER (WHERE c.day > {today} - 7)",
        "flattrs_day": f"sum(c.flattrs) FILTER (WHERE c.day = {today})",
        "trend": f"sum(c.flattrs::float / (1 + ({today} - c.day))) FILTER (WHERE c.day > {today} - 30)",
    }[sort]
