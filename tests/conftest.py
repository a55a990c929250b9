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
