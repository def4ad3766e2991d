import pytest


@pytest.mark.parametrize("a,b,want", [(1, 1, 2), (2, 2, 5)])
def test_add(a, b, want):
    print(f"adding {a} and {b}")
    assert a + b == want


@pytest.fixture
def broken_fixture():
    raise RuntimeError("fixture could not start")


def test_fixture_error(broken_fixture):
    pass


@pytest.mark.xfail(reason="known bug")
def test_xfail():
    assert False


@pytest.mark.skip(reason="slow <& \"quoted\">")
def test_skip():
    pass
