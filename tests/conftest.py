import pytest
from django.contrib.auth.models import Group, User


@pytest.fixture
def make_user(db):
    """A user in one of the role groups created by the roles migration."""

    def make(role: str, username: str | None = None) -> User:
        user = User.objects.create_user(username=username or f"{role}-user", password="pw")
        user.groups.add(Group.objects.get(name=role))
        return user

    return make


@pytest.fixture(autouse=True)
def _fresh_content_type_cache():
    """Transactional tests flush and reload content types (serialized rollback): a cached
    id from before would point auditlog entries at a row that is gone."""
    from django.contrib.contenttypes.models import ContentType

    ContentType.objects.clear_cache()
    yield
