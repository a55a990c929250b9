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


def _flushes(item: pytest.Item | None) -> bool:
    marker = item.get_closest_marker("django_db") if item is not None else None
    return bool(marker and marker.kwargs.get("transaction"))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None):
    """Put back what migrations created (roles, ownership matrix, content types) after a
    transactional test flushed the database, when the next test on this worker expects it.

    pytest-django orders transactional tests after the others, but pytest-xdist hands
    whole files to workers biggest first, so a file of transactional tests can run before
    a plain database test on the same worker. Django restores the serialized data only at
    the start of a serialized_rollback test; the next transactional test restores its own.
    """
    yield
    if not _flushes(item) or nextitem is None or _flushes(nextitem):
        return
    from django.db import connections
    from pytest_django.plugin import blocking_manager_key

    with item.config.stash[blocking_manager_key].unblock():
        for connection in connections.all():
            contents = getattr(connection, "_test_serialized_contents", None)
            if contents:
                connection.creation.deserialize_db_from_string(contents)
