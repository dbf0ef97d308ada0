"""The words of every mail the platform sends: ``(subject, body)`` from the facts, plain text."""
from __future__ import annotations

from services.common.money import Money

SIGNATURE = "\n-- \nFlattr\nYou get this mail because of your account on the platform; notices stop when you delete it.\n"


def confirm_address(username: str, link: str, hours: int) -> tuple[str, str]:
    return (
        "Confirm your email address",
        f"Hello {username},\n\nplease confirm that this address is yours by opening this link:\n\n  {link}\n\n"
        f"The link works once, for {hours} hours. Until you confirm, we send you no notices and cannot "
        f"help you reset a forgotten password.\n\nIf you did not sign up or change your address, ignore this mail."
        + SIGNATURE,
    )


def address_already_registered(attempted_username: str, owner_username: str, reset_link: str) -> tuple[str, str]:
    return (
        "Someone signed up with your address",
        f"Hello {owner_username},\n\nsomeone just made an account named \"{attempted_username}\" with this email address, "
        f"which already belongs to your account \"{owner_username}\". Nothing changed for your account, and the new one "
        f"cannot use this address.\n\nIf it was you and you forgot your password, set a new one here:\n\n  {reset_link}\n\n"
        f"Otherwise you need not do anything." + SIGNATURE,
    )


def password_reset(username: str, link: str, minutes: int) -> tuple[str, str]:
    return (
        "Set a new password",
        f"Hello {username},\n\nsomeone (we hope you) asked to reset the password of your account \"{username}\". "
        f"Set a new one here:\n\n  {link}\n\nThe link works once, for {minutes} minutes. If you did not ask, ignore "
        f"this mail: your password stays as it is." + SIGNATURE,
    )


def password_changed(username: str, link: str) -> tuple[str, str]:
    return (
        "Your password was changed",
        f"Hello {username},\n\nthe password of your account \"{username}\" was just changed. If that was not you, "
        f"reset it at once:\n\n  {link}\n" + SIGNATURE,
    )


def address_changing(username: str, new_address: str) -> tuple[str, str]:
    return (
        "Your email address is being changed",
        f"Hello {username},\n\nyour account \"{username}\" asked to use {new_address} from now on. The change happens "
        f"when the link mailed to that address is opened; until then this address stays in use. If that was not you, "
        f"change your password." + SIGNATURE,
    )


def period_settled(username: str, period: str, notice: dict, statement_link: str, dashboard_link: str) -> tuple[str, str]:
    currency = notice.get("currency", "EUR")
    lines = [f"Hello {username},", "", f"the period {period} is settled."]
    if notice["was_charged"]:
        charged, fee = Money(notice["charged"], currency), Money(notice["fee"], currency)
        lines.append(f"Your budget paid {charged}: {fee} platform fee, {Money(notice['charged'] - notice['fee'], currency)} "
                     f"shared among what you flattred.")
    if notice["earned"]:
        lines.append(f"Your things earned {Money(notice['earned'], currency)}; it is in your revenue.")
    lines += ["", "Where each cent went:", f"  {statement_link}"]
    if notice["escrow_waiting"]:
        lines += ["", f"{Money(notice['escrow_waiting'], currency)} of it waits in escrow for your things whose ownership is "
                      f"not verified yet. Verify them to receive it:", f"  {dashboard_link}"]
    return f"Period {period} is settled", "\n".join(lines) + "\n" + SIGNATURE


def escrow_waiting(username: str, period: str, waiting: int, total: int, currency: str, dashboard_link: str) -> tuple[str, str]:
    return (
        f"{Money(total, currency)} waits for you in escrow",
        f"Hello {username},\n\nreaders flattred your things whose ownership you have not verified yet: {Money(waiting, currency)} "
        f"in period {period}, {Money(total, currency)} in all. It waits in escrow and goes back to the readers if nobody "
        f"verifies the things in time. Verify the page or its host to receive it:\n\n  {dashboard_link}\n" + SIGNATURE,
    )


def payout_completed(username: str, amount: int, currency: str, dashboard_link: str) -> tuple[str, str]:
    paid = Money(amount, currency)
    return (
        f"Payout of {paid} completed",
        f"Hello {username},\n\nyour payout of {paid} is completed: the payment provider has sent it.\n\n"
        f"Your payouts and revenue:\n\n  {dashboard_link}\n" + SIGNATURE,
    )


def account_closed(username: str) -> tuple[str, str]:
    return (
        "Your account is closed",
        f"Hello {username},\n\nyour account \"{username}\" is closed and your profile is erased. The flattrs you made in "
        f"the current period are settled when it closes, like everyone's; then everything your wallet and your revenue "
        f"hold is paid out to you in one final payout. Your things stay listed without an owner: what readers give them "
        f"waits in escrow for whoever proves the page is theirs.\n\nThank you for flattring." + SIGNATURE,
    )
