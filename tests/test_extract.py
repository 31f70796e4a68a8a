"""extract_code: which program is taken from a model's answer, and when none is found."""

import pytest

from codelora.extract import extract_code


@pytest.mark.parametrize(
    "text, code, found",
    [
        # last fenced python block wins
        ("```python\nprint(1)\n```\ntext\n```python\nprint(2)\n```", "print(2)\n", True),
        # a python block inside <think> is a draft, not the answer
        (
            "<think>\n```python\nprint('draft')\n```\n</think>\nFinal:\n```python\nprint('final')\n```",
            "print('final')\n",
            True,
        ),
        # the template opened <think> in the prompt: only the closing tag is in the answer
        ("reasoning ```python\nprint(0)\n``` more\n</think>\n```python\nprint(9)\n```", "print(9)\n", True),
        # an unclosed <think> (cut at max_new_tokens) holds no answer
        ("<think>\nlet me think\n```python\nprint(1)\n```", "", False),
        # unterminated fence (max_new_tokens reached inside the block)
        ("Here:\n```python\nn = int(input())\nprint(n", "n = int(input())\nprint(n\n", True),
        # unlabelled fence and the py / python3 tags count; other languages do not
        ("```\nx = 1\n```", "x = 1\n", True),
        ("```py\nx = 2\n```", "x = 2\n", True),
        ("```Python3\nx = 3\n```", "x = 3\n", True),
        ("```cpp\nint main() {}\n```\n```python\nx = 4\n```\n```text\n5\n```", "x = 4\n", True),
        ("```cpp\nint main() { return 0; }\n```", "", False),
        # an unlabelled block after the python one is sample output, not the program
        ("```python\nprint(input())\n```\nSample:\n```\n3\n```", "print(input())\n", True),
        # no fence: the whole answer when it is a program
        (
            "import sys\nprint(sum(map(int, sys.stdin.read().split())))",
            "import sys\nprint(sum(map(int, sys.stdin.read().split())))\n",
            True,
        ),
        # prose, a bare word, an empty answer: nothing found
        ("I cannot solve this problem.", "", False),
        ("Yes", "", False),
        ("", "", False),
        # an empty python block is skipped in favour of an earlier real one
        ("```python\nprint(7)\n```\n```python\n```", "print(7)\n", True),
        # indented closing fence (inside a list item)
        ("1. Code:\n   ```python\n   print(8)\n   ```\n", "print(8)\n", True),
    ],
)
def test_extract_code(text, code, found):
    assert extract_code(text) == (code, found)


def test_code_found_false_means_empty_code():
    code, found = extract_code("Just read the numbers and add them.")
    assert (code, found) == ("", False)
