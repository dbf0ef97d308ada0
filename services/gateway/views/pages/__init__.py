"""The web app for people: server-rendered pages on the ``web`` blueprint (its sign-in, session
and CSRF protection), built on the same RPCs as the API so that no rule is decided twice here.

- ``discovery``: the home page, /discover, thing pages, profiles
- ``reader``: /wallet, /flattrs, /statements
- ``creator``: /dashboard, registering and claiming things, /embed (snippets)
- ``account``: confirming an address, resetting a password
- ``settings``: /settings (profile, password, address, privacy, tokens, applications), the
  data export
"""


def install(app) -> None:
    """Add the pages to the ``web`` blueprint (before the app registers it) and their filters."""
    from services.gateway.views.pages import account, creator, discovery, reader, settings  # noqa: F401  (they add their routes)
    from services.gateway.views.pages.formatting import FILTERS

    app.jinja_env.filters.update(FILTERS)
