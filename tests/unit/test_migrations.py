"""Each service's migrations form one line: two branches that each added the next number would
leave alembic two heads, and every start-up of the service would fail."""
import pytest
from alembic.script import ScriptDirectory

from services.common.migrate import URL_KEYS, alembic_config


@pytest.mark.parametrize("service", sorted(URL_KEYS))
def test_migrations_have_one_head_and_numbered_files_match_their_revisions(service):
    script = ScriptDirectory.from_config(alembic_config(service, "postgresql://unused/unused"))
    assert len(script.get_heads()) == 1, f"{service} has several heads: {script.get_heads()}"
    for revision in script.walk_revisions():
        assert revision.path.rsplit("/", 1)[-1].startswith(f"{revision.revision}_"), revision.path
