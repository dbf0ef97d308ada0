"""Flattr v2 resource shapes, built from what the services answer."""
from __future__ import annotations

from flask import current_app


def base_url() -> str:
    """The platform's public address (``FLATTR_PUBLIC_URL``), for every link it writes: never the
    request's Host header, which whoever sends the request chooses."""
    return current_app.config["PUBLIC_URL"]


def api_url(path: str) -> str:
    return f"{base_url()}/rest/v2{path}"


def small_user(user: dict | None) -> dict | None:
    if user is None:
        return None
    return {
        "type": "user",
        "resource": api_url(f"/users/{user['username']}"),
        "link": f"{base_url()}/profile/{user['username']}",
        "username": user["username"],
    }


def user(data: dict, *, private: bool = False) -> dict:
    out = small_user(data)
    for name in ("firstname", "lastname", "avatar", "about", "city", "country"):
        out[name] = data.get(name, "")
    if private:
        out["email"] = data["email"]
        out["registered_at"] = data["registered_at"]
    return out


def small_thing(data: dict, base: str | None = None) -> dict:
    base = base or base_url()
    return {
        "type": "thing",
        "resource": f"{base}/rest/v2/things/{data['id']}",
        "link": f"{base}/thing/{data['id']}",
        "id": data["id"],
        "url": data["url"],
        "title": data["title"],
        "flattrs": data.get("flattrs", 0),
    }


def thing(data: dict, caller=None) -> dict:
    owner = data.get("owner")
    out = {
        "type": "thing",
        "resource": api_url(f"/things/{data['id']}"),
        "link": f"{base_url()}/thing/{data['id']}",
        "id": data["id"],
        "url": data["url"],
        "title": data["title"],
        "description": data["description"],
        "language": data["language"],
        "category": data["category"],
        "tags": data["tags"],
        "hidden": data["hidden"],
        "image": data["image"],
        "created_at": data["created_at"],
        "flattrs": data.get("flattrs", 0),
        "owner": small_user(owner),
        # whether the owner proved the thing is theirs; an unverified owner's shares wait in escrow
        "verified": bool(data.get("verified", False)),
    }
    if caller is not None:
        out["flattred"] = bool(data.get("flattred", False))
        if owner is not None and owner["id"] == caller.user_id:
            out["updated_at"] = data["updated_at"]
            out["last_flattr_at"] = data.get("last_flattr_at")
    return out


def check(data: dict) -> dict:
    """An ownership check: of a thing's page (``kind`` page) or of a host."""
    return {
        "type": "check",
        "kind": data["kind"],
        "state": data["state"],
        "reason": data["reason"],
        "thing": data["thing_id"],
        "host": data["target"] if data["kind"] == "host" else None,
        "created_at": data["created_at"],
        "finished_at": data["finished_at"],
    }


def host(data: dict) -> dict:
    """A host the caller verified (or is verifying: ``verified`` false, with the latest check)."""
    return {
        "type": "host",
        "host": data["host"],
        "verified": data["verified"],
        "method": data["method"],
        "verified_at": data["verified_at"],
        "check": check(data["check"]) if data.get("check") else None,
    }
