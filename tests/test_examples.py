from codelora.data.examples import parse_examples

CF_STATEMENT = """You are given an array a of n integers. Find the sum of its elements.

Input

The first line contains a single integer n (1 ≤ n ≤ 100).
The second line contains n integers a_1, a_2, ..., a_n.

Output

Print one integer — the sum.

Examples

Input

3
1 2 3


Output

6


Input

1
-5

Output

-5

Input
2
10 20
Output
30

Note

In the first example 1 + 2 + 3 = 6.
"""


def test_codeforces_multiple_examples_with_note():
    assert parse_examples(CF_STATEMENT) == [
        ("3\n1 2 3\n", "6"),
        ("1\n-5\n", "-5"),
        ("2\n10 20\n", "30"),
    ]


def test_description_sections_not_taken_as_examples():
    text = "Title\n\nInput\n\nThe first line contains n.\n\nOutput\n\nPrint n.\n"
    assert parse_examples(text) == []


def test_no_examples():
    assert parse_examples("Just a statement without any samples.") == []
    assert parse_examples("") == []


def test_singular_example_with_colons_and_trailing_spaces():
    text = "Do it.\n\nInput:\nn\n\nExample\nInput:   \n4  \n1 2 3 4\t\nOutput:\nYES   \nNO\n"
    assert parse_examples(text) == [("4\n1 2 3 4\n", "YES\nNO")]


def test_atcoder_three_samples_with_explanations():
    text = """Problem Statement
Print a + b.

Constraints
1 <= a, b <= 100

Input
Input is given from Standard Input in the following format:
a b

Output
Print the answer.

Sample Input 1

1 2

Sample Output 1

3

Since 1 + 2 = 3, print 3.

Sample Input 2

10 20

Sample Output 2

30

Sample Input 3
100 100
Sample Output 3
200
"""
    assert parse_examples(text) == [("1 2\n", "3"), ("10 20\n", "30"), ("100 100\n", "200")]


def test_inline_input_output_blocks():
    text = (
        "Reverse it.\n\nInput\n\nA string.\n\nOutput\n\nThe reversed string.\n\n"
        "Example 1:\nInput: abc\nOutput: cba\n\nExample 2:\nInput: 2\n1 2\nOutput: 2 1\n"
    )
    assert parse_examples(text) == [("abc\n", "cba"), ("2\n1 2\n", "2 1")]


def test_fenced_blocks():
    text = (
        "Statement.\n\n## Examples\n\n**Input:**\n```\n3\n1 2 3\n```\n\n"
        "**Output:**\n```\n6\n```\n\nSample Input 2\n```text\n5\n```\nSample Output 2\n```\n5\n```\n"
    )
    assert parse_examples(text) == [("3\n1 2 3\n", "6"), ("5\n", "5")]


def test_sample_input_headings_without_examples_heading():
    text = "Legend.\n\nSample Input\n7\nSample Output\nYES\n"
    assert parse_examples(text) == [("7\n", "YES")]


def test_input_without_output_is_ignored():
    text = "Examples\n\nInput\n\n1\n"
    assert parse_examples(text) == []


def test_crlf_line_endings():
    text = "Examples\r\n\r\nInput\r\n\r\n2 3\r\n\r\nOutput\r\n\r\n5\r\n"
    assert parse_examples(text) == [("2 3\n", "5")]
