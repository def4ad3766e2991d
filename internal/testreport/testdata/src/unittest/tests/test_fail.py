import sys
import unittest


class TestFail(unittest.TestCase):
    def test_fail(self):
        print("some stdout from the test")
        self.assertEqual(1, 2)

    def test_error(self):
        raise RuntimeError("boom\nsecond line")

    def test_docstring_fail(self):
        """A failing test with a docstring."""
        self.assertTrue(False, "was false")

    def test_subtests(self):
        for i in range(3):
            with self.subTest(i=i):
                self.assertLess(i, 2)

    def test_logs(self):
        sys.stderr.write("noise on stderr\n")


class TestSkipClass(unittest.TestCase):
    def test_skip_in_body(self):
        self.skipTest("skipped from the body")
