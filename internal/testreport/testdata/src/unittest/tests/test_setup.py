import unittest


class TestSetUpClass(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        raise ValueError("cannot set up")

    def test_never_runs(self):
        pass
