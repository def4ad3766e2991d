import unittest


class TestPass(unittest.TestCase):
    def test_pass(self):
        self.assertEqual(1 + 1, 2)

    def test_docstring(self):
        """Adds two numbers
        and checks the sum (a multi-line docstring)."""
        self.assertEqual(2 + 2, 4)

    @unittest.skip("not on this platform")
    def test_skipped(self):
        pass

    @unittest.expectedFailure
    def test_expected_failure(self):
        self.assertEqual(1, 2)

    @unittest.expectedFailure
    def test_unexpected_success(self):
        self.assertEqual(1, 1)
