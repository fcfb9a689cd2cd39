import unittest

import app


class LoadTest(unittest.TestCase):
    def test_defaults(self):
        self.assertEqual(app.load(""), {"port": 8080, "workers": 2})

    def test_values_win(self):
        self.assertEqual(app.load("port: 9000\n")["port"], 9000)


if __name__ == "__main__":
    unittest.main()
