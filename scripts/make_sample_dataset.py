"""Generate codelora/data/sample_problems.jsonl (original sample problems).

Each problem is authored below; expected example outputs are computed by
running the first reference solution, so statements and code stay consistent.
Run: python scripts/make_sample_dataset.py

Tiers (the `difficulty` field): EASY and MEDIUM problems (sample-001..063, competitive-programming style) in
sample_problems.jsonl (`data.dataset: sample`), then a VERY_EASY tier (sample-064..) of one-line programs in
sample_very_easy.jsonl: read a value, print a simple function of it. `data.dataset: demo` is both files. The
VERY_EASY tier exists for the demo: the embedded SmolLM2-135M solves none of the EASY ones, so a demo held out on
those alone showed 0/9 for every checkpoint; on the VERY_EASY held-out problems it can solve some, and training on
the VERY_EASY train problems (same shapes, other functions) can move that number. They are stated as very easy in
the data (difficulty VERY_EASY) and in the docs; they say nothing about a model's skill at real problems.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "codelora" / "data"
OUT = DATA / "sample_problems.jsonl"  # `data.dataset: sample`: the EASY and MEDIUM problems
OUT_VERY_EASY = DATA / "sample_very_easy.jsonl"  # `data.dataset: demo` is both files

# (title, difficulty, legend, input spec, output spec, [example inputs], [(think, code), ...], split or None)
P = []
# The EASY/MEDIUM problems' split is by position (the last 12: 9 test, then 3 valid); the VERY_EASY tier names its own.
N_CLASSIC = 63


def add(title, diff, legend, inp, outp, examples, sols, split=None):
    P.append((title, diff, legend, inp, outp, examples, sols, split))


add(
    "Sum of Numbers",
    "EASY",
    "Given n integers, print their sum.",
    "The first line contains n (1 <= n <= 100). The second line contains n integers a_i (|a_i| <= 10^9).",
    "Print the sum.",
    ["3\n1 2 3\n", "1\n-5\n"],
    [
        ("Read all numbers and add them.", "n = int(input())\na = list(map(int, input().split()))\nprint(sum(a))\n"),
        (
            "Accumulate in a loop over tokens.",
            "import sys\ndata = sys.stdin.read().split()\nn = int(data[0])\ntotal = 0\nfor x in data[1:1 + n]:\n    total += int(x)\nprint(total)\n",
        ),
    ],
)
add(
    "Reverse String",
    "EASY",
    "Given a string s, print it reversed.",
    "A single line with a string s of lowercase letters (1 <= |s| <= 100).",
    "Print s reversed.",
    ["hello\n", "abc\n"],
    [
        ("Slicing with step -1 reverses a string.", "s = input().strip()\nprint(s[::-1])\n"),
        ("Build the reversed string with reversed().", "s = input().strip()\nprint(''.join(reversed(s)))\n"),
    ],
)
add(
    "Count Vowels",
    "EASY",
    "Count how many vowels (a, e, i, o, u) the string s contains.",
    "A single line with a string s of lowercase letters (1 <= |s| <= 1000).",
    "Print the number of vowels.",
    ["programming\n", "xyz\n"],
    [
        (
            "Check each character against the vowel set.",
            "s = input().strip()\nprint(sum(1 for c in s if c in 'aeiou'))\n",
        ),
        ("Use str.count for each vowel.", "s = input().strip()\nprint(sum(s.count(v) for v in 'aeiou'))\n"),
    ],
)
add(
    "Maximum Element",
    "EASY",
    "Given n integers, print the largest one.",
    "The first line contains n (1 <= n <= 100). The second line contains n integers.",
    "Print the maximum.",
    ["5\n3 9 -2 9 4\n"],
    [
        ("Python's max does it directly.", "input()\nprint(max(map(int, input().split())))\n"),
        (
            "Track the best value in a loop.",
            "n = int(input())\na = list(map(int, input().split()))\nbest = a[0]\nfor x in a:\n    if x > best:\n        best = x\nprint(best)\n",
        ),
    ],
)
add(
    "Is Prime",
    "EASY",
    "Determine whether n is a prime number.",
    "A single integer n (1 <= n <= 10^9).",
    "Print YES if n is prime, otherwise NO.",
    ["7\n", "1\n", "91\n"],
    [
        (
            "Trial division up to sqrt(n).",
            "n = int(input())\nok = n >= 2\ni = 2\nwhile i * i <= n:\n    if n % i == 0:\n        ok = False\n        break\n    i += 1\nprint('YES' if ok else 'NO')\n",
        ),
        (
            "Check 2 separately, then odd divisors only.",
            "import math\nn = int(input())\nif n < 2:\n    print('NO')\nelif n % 2 == 0:\n    print('YES' if n == 2 else 'NO')\nelse:\n    r = math.isqrt(n)\n    print('NO' if any(n % d == 0 for d in range(3, r + 1, 2)) else 'YES')\n",
        ),
    ],
)
add(
    "Even Count",
    "EASY",
    "Count the even numbers among n given integers.",
    "The first line contains n (1 <= n <= 100). The second line contains n integers.",
    "Print the count of even numbers.",
    ["6\n1 2 3 4 5 6\n", "2\n7 9\n"],
    [
        (
            "An integer is even when x % 2 == 0.",
            "input()\nprint(sum(1 for x in map(int, input().split()) if x % 2 == 0))\n",
        )
    ],
)
add(
    "Sort Ascending",
    "EASY",
    "Sort n integers in non-decreasing order.",
    "The first line contains n (1 <= n <= 1000). The second line contains n integers.",
    "Print the sorted numbers separated by spaces.",
    ["4\n3 1 4 1\n"],
    [
        ("Use the built-in sort.", "input()\na = sorted(map(int, input().split()))\nprint(*a)\n"),
        (
            "Insertion sort is enough for n <= 1000.",
            "n = int(input())\na = list(map(int, input().split()))\nfor i in range(1, n):\n    j = i\n    while j > 0 and a[j - 1] > a[j]:\n        a[j - 1], a[j] = a[j], a[j - 1]\n        j -= 1\nprint(' '.join(map(str, a)))\n",
        ),
    ],
)
add(
    "Palindrome Check",
    "EASY",
    "Check whether the string s reads the same forwards and backwards.",
    "A single line with a string s of lowercase letters.",
    "Print YES or NO.",
    ["racecar\n", "abca\n"],
    [
        ("Compare s with its reverse.", "s = input().strip()\nprint('YES' if s == s[::-1] else 'NO')\n"),
        (
            "Two pointers from both ends.",
            "s = input().strip()\ni, j = 0, len(s) - 1\nok = True\nwhile i < j:\n    if s[i] != s[j]:\n        ok = False\n        break\n    i += 1\n    j -= 1\nprint('YES' if ok else 'NO')\n",
        ),
    ],
)
add(
    "Factorial",
    "EASY",
    "Compute n! (the product 1 * 2 * ... * n).",
    "A single integer n (0 <= n <= 20).",
    "Print n!.",
    ["5\n", "0\n"],
    [
        ("Multiply iteratively.", "n = int(input())\nr = 1\nfor i in range(2, n + 1):\n    r *= i\nprint(r)\n"),
        ("math.factorial does it.", "import math\nprint(math.factorial(int(input())))\n"),
    ],
)
add(
    "Fibonacci",
    "EASY",
    "Print the n-th Fibonacci number, where F(0) = 0 and F(1) = 1.",
    "A single integer n (0 <= n <= 90).",
    "Print F(n).",
    ["10\n", "1\n"],
    [
        (
            "Iterate with two variables.",
            "n = int(input())\na, b = 0, 1\nfor _ in range(n):\n    a, b = b, a + b\nprint(a)\n",
        ),
        (
            "Fill a table bottom-up.",
            "n = int(input())\nf = [0, 1]\nfor i in range(2, n + 1):\n    f.append(f[-1] + f[-2])\nprint(f[n])\n",
        ),
    ],
)
add(
    "Word Count",
    "EASY",
    "Count the words in a line. Words are separated by one or more spaces.",
    "A single line of text (length at most 1000).",
    "Print the number of words.",
    ["the quick  brown fox\n", "hello\n"],
    [("str.split() with no arguments handles repeated spaces.", "print(len(input().split()))\n")],
)
add(
    "GCD of Two",
    "EASY",
    "Given two positive integers a and b, print their greatest common divisor.",
    "A single line with a and b (1 <= a, b <= 10^9).",
    "Print gcd(a, b).",
    ["12 18\n", "7 5\n"],
    [
        ("Euclid's algorithm.", "a, b = map(int, input().split())\nwhile b:\n    a, b = b, a % b\nprint(a)\n"),
        ("Use math.gcd.", "import math\na, b = map(int, input().split())\nprint(math.gcd(a, b))\n"),
    ],
)
add(
    "LCM of Two",
    "EASY",
    "Given two positive integers a and b, print their least common multiple.",
    "A single line with a and b (1 <= a, b <= 10^6).",
    "Print lcm(a, b).",
    ["4 6\n", "3 7\n"],
    [("lcm = a * b / gcd(a, b).", "import math\na, b = map(int, input().split())\nprint(a * b // math.gcd(a, b))\n")],
)
add(
    "Digit Sum",
    "EASY",
    "Print the sum of the decimal digits of n.",
    "A single integer n (0 <= n <= 10^18).",
    "Print the digit sum.",
    ["12345\n", "0\n"],
    [
        ("Sum the characters as digits.", "print(sum(int(c) for c in input().strip()))\n"),
        ("Peel digits with % 10.", "n = int(input())\ns = 0\nwhile n:\n    s += n % 10\n    n //= 10\nprint(s)\n"),
    ],
)
add(
    "Prefix Sum Queries",
    "MEDIUM",
    "Given an array and q queries (l, r), print the sum of a_l..a_r for each query (1-indexed).",
    "The first line contains n and q. The second line contains n integers. Each of the next q lines contains l and r.",
    "Print q lines, the answers.",
    ["5 3\n1 2 3 4 5\n1 3\n2 5\n4 4\n"],
    [
        (
            "Precompute prefix sums so each query is O(1).",
            "import sys\ndata = sys.stdin.read().split()\nn, q = int(data[0]), int(data[1])\na = list(map(int, data[2:2 + n]))\np = [0]\nfor x in a:\n    p.append(p[-1] + x)\nout = []\nidx = 2 + n\nfor _ in range(q):\n    l, r = int(data[idx]), int(data[idx + 1])\n    idx += 2\n    out.append(p[r] - p[l - 1])\nprint('\\n'.join(map(str, out)))\n",
        ),
        (
            "Use itertools.accumulate for the prefix array.",
            "import sys\nfrom itertools import accumulate\nit = iter(sys.stdin.read().split())\nn, q = int(next(it)), int(next(it))\np = [0] + list(accumulate(int(next(it)) for _ in range(n)))\nfor _ in range(q):\n    l, r = int(next(it)), int(next(it))\n    print(p[r] - p[l - 1])\n",
        ),
    ],
)
add(
    "Count Primes Up To N",
    "MEDIUM",
    "Count the primes not exceeding n.",
    "A single integer n (1 <= n <= 10^6).",
    "Print the number of primes p <= n.",
    ["10\n", "1\n", "100\n"],
    [
        (
            "Sieve of Eratosthenes.",
            "n = int(input())\nif n < 2:\n    print(0)\nelse:\n    s = bytearray([1]) * (n + 1)\n    s[0] = s[1] = 0\n    i = 2\n    while i * i <= n:\n        if s[i]:\n            s[i * i :: i] = bytearray(len(range(i * i, n + 1, i)))\n        i += 1\n    print(sum(s))\n",
        ),
        (
            "Sieve using a list of booleans.",
            "n = int(input())\nis_p = [True] * (n + 1)\ncnt = 0\nfor i in range(2, n + 1):\n    if is_p[i]:\n        cnt += 1\n        for j in range(i * i, n + 1, i):\n            is_p[j] = False\nprint(cnt)\n",
        ),
    ],
)
add(
    "Grid Stars",
    "EASY",
    "Given an n x m grid of '.' and '*', count the '*' cells.",
    "The first line contains n and m. The next n lines contain the grid rows.",
    "Print the number of '*' cells.",
    ["3 4\n*..*\n....\n.**.\n"],
    [
        (
            "Count per row and sum.",
            "n, m = map(int, input().split())\nprint(sum(input().count('*') for _ in range(n)))\n",
        )
    ],
)
add(
    "Second Largest",
    "EASY",
    "Print the second largest distinct value among n integers, or -1 if it does not exist.",
    "The first line contains n. The second line contains n integers.",
    "Print the answer.",
    ["5\n4 1 4 3 2\n", "3\n7 7 7\n"],
    [
        (
            "Sort distinct values.",
            "input()\nv = sorted(set(map(int, input().split())))\nprint(v[-2] if len(v) >= 2 else -1)\n",
        ),
        (
            "One pass keeping the top two distinct values.",
            "input()\nfirst = second = None\nfor x in map(int, input().split()):\n    if first is None or x > first:\n        first, second = x, first\n    elif x != first and (second is None or x > second):\n        second = x\nprint(second if second is not None else -1)\n",
        ),
    ],
)
add(
    "Character Frequency",
    "EASY",
    "Print the most frequent letter of s; on ties choose the alphabetically smallest.",
    "A single line with a string s of lowercase letters.",
    "Print the letter and its count separated by a space.",
    ["banana\n", "abc\n"],
    [
        (
            "Count with a Counter then pick max by (-count, letter).",
            "from collections import Counter\nc = Counter(input().strip())\nch = min(c, key=lambda k: (-c[k], k))\nprint(ch, c[ch])\n",
        ),
        (
            "Array of 26 counters.",
            "s = input().strip()\ncnt = [0] * 26\nfor ch in s:\n    cnt[ord(ch) - 97] += 1\nbest = max(range(26), key=lambda i: (cnt[i], -i))\nprint(chr(97 + best), cnt[best])\n",
        ),
    ],
)
add(
    "Min Coins",
    "EASY",
    "Using coins of values 1, 5, 10 and 25, pay exactly n with as few coins as possible.",
    "A single integer n (0 <= n <= 10^9).",
    "Print the minimum number of coins.",
    ["63\n", "4\n"],
    [
        (
            "Greedy works for this coin system: take the largest coin first.",
            "n = int(input())\nc = 0\nfor v in (25, 10, 5, 1):\n    c += n // v\n    n %= v\nprint(c)\n",
        )
    ],
)
add(
    "Binary Representation",
    "EASY",
    "Print n in binary without leading zeros.",
    "A single integer n (0 <= n <= 10^9).",
    "Print the binary representation.",
    ["10\n", "0\n"],
    [
        ("Use format with 'b'.", "print(format(int(input()), 'b'))\n"),
        (
            "Repeated division by 2.",
            "n = int(input())\nif n == 0:\n    print(0)\nelse:\n    bits = []\n    while n:\n        bits.append(str(n % 2))\n        n //= 2\n    print(''.join(reversed(bits)))\n",
        ),
    ],
)
add(
    "Anagram Check",
    "EASY",
    "Check whether two strings are anagrams of each other.",
    "Two lines, each containing a string of lowercase letters.",
    "Print YES or NO.",
    ["listen\nsilent\n", "abc\nabd\n"],
    [
        (
            "Sorted characters must be equal.",
            "a = input().strip()\nb = input().strip()\nprint('YES' if sorted(a) == sorted(b) else 'NO')\n",
        ),
        (
            "Compare Counters.",
            "from collections import Counter\nprint('YES' if Counter(input().strip()) == Counter(input().strip()) else 'NO')\n",
        ),
    ],
)
add(
    "Range Sum",
    "EASY",
    "Print the sum of all integers from a to b inclusive.",
    "A single line with a and b (-10^9 <= a <= b <= 10^9).",
    "Print the sum.",
    ["1 100\n", "-3 2\n"],
    [("Arithmetic series formula.", "a, b = map(int, input().split())\nprint((a + b) * (b - a + 1) // 2)\n")],
)
add(
    "Capitalize Words",
    "EASY",
    "Capitalize the first letter of each word in a line of lowercase words separated by single spaces.",
    "A single line of words.",
    "Print the transformed line.",
    ["hello world\n"],
    [
        (
            "Uppercase the first character of each split word.",
            "print(' '.join(w[0].upper() + w[1:] for w in input().split()))\n",
        )
    ],
)
add(
    "Running Maximum",
    "EASY",
    "For each position i print the maximum of a_1..a_i.",
    "The first line contains n. The second line contains n integers.",
    "Print n numbers separated by spaces.",
    ["5\n2 1 5 3 6\n"],
    [
        (
            "Keep the maximum so far.",
            "input()\nbest = None\nres = []\nfor x in map(int, input().split()):\n    best = x if best is None else max(best, x)\n    res.append(best)\nprint(*res)\n",
        ),
        (
            "itertools.accumulate with max.",
            "from itertools import accumulate\ninput()\nprint(*accumulate(map(int, input().split()), max))\n",
        ),
    ],
)
add(
    "Divisor Count",
    "EASY",
    "Count the positive divisors of n.",
    "A single integer n (1 <= n <= 10^9).",
    "Print the number of divisors.",
    ["12\n", "1\n", "49\n"],
    [
        (
            "Pair divisors i and n/i up to sqrt(n).",
            "n = int(input())\nc = 0\ni = 1\nwhile i * i <= n:\n    if n % i == 0:\n        c += 1 if i * i == n else 2\n    i += 1\nprint(c)\n",
        ),
        (
            "Factorize and multiply (exponent + 1).",
            "n = int(input())\nres = 1\nd = 2\nwhile d * d <= n:\n    e = 0\n    while n % d == 0:\n        n //= d\n        e += 1\n    res *= e + 1\n    d += 1\nif n > 1:\n    res *= 2\nprint(res)\n",
        ),
    ],
)
add(
    "Matrix Transpose",
    "EASY",
    "Print the transpose of an n x m integer matrix.",
    "The first line contains n and m. Then n lines with m integers each.",
    "Print m lines with n integers each.",
    ["2 3\n1 2 3\n4 5 6\n"],
    [
        (
            "zip(*rows) transposes.",
            "n, m = map(int, input().split())\nrows = [input().split() for _ in range(n)]\nfor col in zip(*rows):\n    print(' '.join(col))\n",
        )
    ],
)
add(
    "Remove Duplicates",
    "EASY",
    "Remove repeated values, keeping the first occurrence of each, and print the rest in order.",
    "The first line contains n. The second line contains n integers.",
    "Print the remaining numbers separated by spaces.",
    ["7\n3 1 3 2 1 5 2\n"],
    [
        (
            "Track seen values in a set.",
            "input()\nseen = set()\nres = []\nfor x in input().split():\n    if x not in seen:\n        seen.add(x)\n        res.append(x)\nprint(' '.join(res))\n",
        ),
        ("dict.fromkeys preserves insertion order.", "input()\nprint(' '.join(dict.fromkeys(input().split())))\n"),
    ],
)
add(
    "Max Subarray Sum",
    "MEDIUM",
    "Find the maximum sum of a non-empty contiguous subarray.",
    "The first line contains n (1 <= n <= 10^5). The second line contains n integers.",
    "Print the maximum subarray sum.",
    ["8\n-2 1 -3 4 -1 2 1 -5\n", "3\n-3 -1 -2\n"],
    [
        (
            "Kadane's algorithm.",
            "input()\na = list(map(int, input().split()))\nbest = cur = a[0]\nfor x in a[1:]:\n    cur = max(x, cur + x)\n    best = max(best, cur)\nprint(best)\n",
        ),
        (
            "Prefix sums: best p[j] - min p[i] for i < j.",
            "input()\na = list(map(int, input().split()))\np = 0\nmn = 0\nbest = a[0]\nfor x in a:\n    p += x\n    best = max(best, p - mn)\n    mn = min(mn, p)\nprint(best)\n",
        ),
    ],
)
add(
    "Balanced Brackets",
    "MEDIUM",
    "Check whether a string of '(' and ')' is a correct bracket sequence.",
    "A single line with the bracket string (length 1..10^5).",
    "Print YES or NO.",
    ["(()())\n", "())(\n"],
    [
        (
            "Keep a balance counter that must never go negative.",
            "s = input().strip()\nb = 0\nok = True\nfor c in s:\n    b += 1 if c == '(' else -1\n    if b < 0:\n        ok = False\n        break\nprint('YES' if ok and b == 0 else 'NO')\n",
        ),
        (
            "Use an explicit stack.",
            "s = input().strip()\nst = []\nok = True\nfor c in s:\n    if c == '(':\n        st.append(c)\n    elif st:\n        st.pop()\n    else:\n        ok = False\n        break\nprint('YES' if ok and not st else 'NO')\n",
        ),
    ],
)
add(
    "Two Sum Exists",
    "MEDIUM",
    "Decide whether two different positions i != j have a_i + a_j = k.",
    "The first line contains n and k. The second line contains n integers.",
    "Print YES or NO.",
    ["5 9\n2 7 11 15 1\n", "3 10\n5 1 2\n"],
    [
        (
            "Hash set of values seen so far.",
            "n, k = map(int, input().split())\nseen = set()\nok = False\nfor x in map(int, input().split()):\n    if k - x in seen:\n        ok = True\n    seen.add(x)\nprint('YES' if ok else 'NO')\n",
        ),
        (
            "Sort and use two pointers.",
            "n, k = map(int, input().split())\na = sorted(map(int, input().split()))\ni, j = 0, n - 1\nok = False\nwhile i < j:\n    s = a[i] + a[j]\n    if s == k:\n        ok = True\n        break\n    if s < k:\n        i += 1\n    else:\n        j -= 1\nprint('YES' if ok else 'NO')\n",
        ),
    ],
)
add(
    "Caesar Shift",
    "EASY",
    "Shift each lowercase letter of s forward by k positions in the alphabet, wrapping around.",
    "The first line contains k (0 <= k <= 100). The second line contains s.",
    "Print the shifted string.",
    ["3\nxyzabc\n"],
    [
        (
            "Shift with modular arithmetic.",
            "k = int(input())\ns = input().strip()\nprint(''.join(chr((ord(c) - 97 + k) % 26 + 97) for c in s))\n",
        )
    ],
)
add(
    "Grid Path Count",
    "MEDIUM",
    "Count paths from the top-left to bottom-right cell of an n x m grid moving only right or down, avoiding '#' cells. Print the answer modulo 10^9+7.",
    "The first line contains n and m. The next n lines contain the grid of '.' and '#'.",
    "Print the number of paths modulo 10^9+7.",
    ["3 3\n...\n.#.\n...\n", "2 2\n.#\n#.\n"],
    [
        (
            "DP: ways[i][j] = ways[i-1][j] + ways[i][j-1] on free cells.",
            "MOD = 10**9 + 7\nn, m = map(int, input().split())\ng = [input().strip() for _ in range(n)]\ndp = [[0] * m for _ in range(n)]\nfor i in range(n):\n    for j in range(m):\n        if g[i][j] == '#':\n            continue\n        if i == 0 and j == 0:\n            dp[i][j] = 1\n            continue\n        v = 0\n        if i:\n            v += dp[i - 1][j]\n        if j:\n            v += dp[i][j - 1]\n        dp[i][j] = v % MOD\nprint(dp[n - 1][m - 1])\n",
        ),
        (
            "Rolling one-dimensional DP row.",
            "MOD = 10**9 + 7\nn, m = map(int, input().split())\nrow = [0] * m\nfor i in range(n):\n    line = input().strip()\n    for j in range(m):\n        if line[j] == '#':\n            row[j] = 0\n        elif i == 0 and j == 0:\n            row[j] = 1\n        elif j:\n            row[j] = (row[j] + row[j - 1]) % MOD\nprint(row[m - 1])\n",
        ),
    ],
)
add(
    "Count Islands",
    "MEDIUM",
    "Count the connected groups of '#' cells in a grid (cells connect horizontally or vertically).",
    "The first line contains n and m. The next n lines contain the grid.",
    "Print the number of groups.",
    ["4 5\n##..#\n#...#\n..#..\n....#\n"],
    [
        (
            "BFS from each unvisited '#' cell.",
            "from collections import deque\nn, m = map(int, input().split())\ng = [input().strip() for _ in range(n)]\nseen = [[False] * m for _ in range(n)]\ncnt = 0\nfor i in range(n):\n    for j in range(m):\n        if g[i][j] == '#' and not seen[i][j]:\n            cnt += 1\n            seen[i][j] = True\n            dq = deque([(i, j)])\n            while dq:\n                x, y = dq.popleft()\n                for dx, dy in ((1, 0), (-1, 0), (0, 1), (0, -1)):\n                    a, b = x + dx, y + dy\n                    if 0 <= a < n and 0 <= b < m and g[a][b] == '#' and not seen[a][b]:\n                        seen[a][b] = True\n                        dq.append((a, b))\nprint(cnt)\n",
        ),
        (
            "Union-find over adjacent '#' cells.",
            "n, m = map(int, input().split())\ng = [input().strip() for _ in range(n)]\npar = list(range(n * m))\n\n\ndef find(x):\n    while par[x] != x:\n        par[x] = par[par[x]]\n        x = par[x]\n    return x\n\n\nfor i in range(n):\n    for j in range(m):\n        if g[i][j] != '#':\n            continue\n        if i + 1 < n and g[i + 1][j] == '#':\n            par[find(i * m + j)] = find((i + 1) * m + j)\n        if j + 1 < m and g[i][j + 1] == '#':\n            par[find(i * m + j)] = find(i * m + j + 1)\nprint(len({find(i * m + j) for i in range(n) for j in range(m) if g[i][j] == '#'}))\n",
        ),
    ],
)
add(
    "Leap Year",
    "EASY",
    "Decide whether year y is a leap year in the Gregorian calendar.",
    "A single integer y (1 <= y <= 10^4).",
    "Print YES or NO.",
    ["2000\n", "1900\n", "2024\n"],
    [
        (
            "Divisible by 4 and not by 100, or divisible by 400.",
            "y = int(input())\nprint('YES' if (y % 4 == 0 and y % 100 != 0) or y % 400 == 0 else 'NO')\n",
        ),
        ("Use the calendar module.", "import calendar\nprint('YES' if calendar.isleap(int(input())) else 'NO')\n"),
    ],
)
add(
    "Minimum Platforms Greedy",
    "MEDIUM",
    "Given n intervals [s_i, e_i], choose the maximum number of pairwise non-overlapping intervals (touching endpoints overlap).",
    "The first line contains n. Each of the next n lines contains s_i and e_i.",
    "Print the maximum number of intervals.",
    ["4\n1 3\n2 5\n4 6\n7 8\n"],
    [
        (
            "Greedy by earliest end time.",
            "n = int(input())\niv = sorted((tuple(map(int, input().split())) for _ in range(n)), key=lambda t: t[1])\ncnt = 0\nlast = None\nfor s, e in iv:\n    if last is None or s > last:\n        cnt += 1\n        last = e\nprint(cnt)\n",
        )
    ],
)
add(
    "Rotate Array",
    "EASY",
    "Rotate an array to the right by k positions.",
    "The first line contains n and k (0 <= k <= 10^9). The second line contains n integers.",
    "Print the rotated array.",
    ["5 2\n1 2 3 4 5\n"],
    [
        (
            "Slice at n - k mod n.",
            "n, k = map(int, input().split())\na = input().split()\nk %= n\nprint(' '.join(a[n - k:] + a[:n - k]))\n",
        ),
        (
            "deque.rotate.",
            "from collections import deque\nn, k = map(int, input().split())\nd = deque(input().split())\nd.rotate(k % n)\nprint(' '.join(d))\n",
        ),
    ],
)
add(
    "Count Pairs Divisible",
    "MEDIUM",
    "Count pairs i < j such that (a_i + a_j) is divisible by k.",
    "The first line contains n and k. The second line contains n integers (0 <= a_i <= 10^9).",
    "Print the number of pairs.",
    ["5 3\n1 2 3 4 5\n"],
    [
        (
            "Count remainders; for each element add the count of the complementary remainder seen so far.",
            "n, k = map(int, input().split())\ncnt = [0] * k\nres = 0\nfor x in map(int, input().split()):\n    r = x % k\n    res += cnt[(k - r) % k]\n    cnt[r] += 1\nprint(res)\n",
        )
    ],
)
add(
    "Run Length Encoding",
    "EASY",
    "Compress s by replacing each maximal run of a letter with the letter followed by the run length.",
    "A single line with a string s of lowercase letters.",
    "Print the encoded string.",
    ["aaabccdddd\n", "z\n"],
    [
        (
            "Walk runs with an index.",
            "s = input().strip()\nout = []\ni = 0\nwhile i < len(s):\n    j = i\n    while j < len(s) and s[j] == s[i]:\n        j += 1\n    out.append(s[i] + str(j - i))\n    i = j\nprint(''.join(out))\n",
        ),
        (
            "itertools.groupby.",
            "from itertools import groupby\nprint(''.join(k + str(len(list(g))) for k, g in groupby(input().strip())))\n",
        ),
    ],
)
add(
    "Diagonal Sum",
    "EASY",
    "Print the sum of both diagonals of an n x n matrix (the center cell counts once).",
    "The first line contains n. Then n lines with n integers.",
    "Print the sum.",
    ["3\n1 2 3\n4 5 6\n7 8 9\n"],
    [
        (
            "Add a[i][i] and a[i][n-1-i], avoiding double counting.",
            "n = int(input())\na = [list(map(int, input().split())) for _ in range(n)]\ns = 0\nfor i in range(n):\n    s += a[i][i]\n    if i != n - 1 - i:\n        s += a[i][n - 1 - i]\nprint(s)\n",
        )
    ],
)
add(
    "Longest Increasing Run",
    "EASY",
    "Find the length of the longest strictly increasing contiguous segment.",
    "The first line contains n. The second line contains n integers.",
    "Print the length.",
    ["7\n1 2 2 3 4 5 1\n"],
    [
        (
            "Extend the current run while increasing.",
            "input()\na = list(map(int, input().split()))\nbest = cur = 1\nfor i in range(1, len(a)):\n    cur = cur + 1 if a[i] > a[i - 1] else 1\n    best = max(best, cur)\nprint(best)\n",
        )
    ],
)
add(
    "Sum of Squares",
    "EASY",
    "Print 1^2 + 2^2 + ... + n^2.",
    "A single integer n (1 <= n <= 10^6).",
    "Print the sum.",
    ["3\n", "10\n"],
    [
        ("Closed form n(n+1)(2n+1)/6.", "n = int(input())\nprint(n * (n + 1) * (2 * n + 1) // 6)\n"),
        ("Direct summation.", "n = int(input())\nprint(sum(i * i for i in range(1, n + 1)))\n"),
    ],
)
add(
    "Stock Profit",
    "MEDIUM",
    "Given daily prices, find the best profit from one buy followed by one later sell (0 if no profit).",
    "The first line contains n. The second line contains n prices.",
    "Print the maximum profit.",
    ["6\n7 1 5 3 6 4\n", "3\n5 4 3\n"],
    [
        (
            "Track the minimum price so far.",
            "input()\nmn = None\nbest = 0\nfor p in map(int, input().split()):\n    if mn is None or p < mn:\n        mn = p\n    best = max(best, p - mn)\nprint(best)\n",
        ),
        (
            "Suffix maxima: best future sale for each day.",
            "n = int(input())\na = list(map(int, input().split()))\nmx = 0\nbest = 0\nfor p in reversed(a):\n    mx = max(mx, p)\n    best = max(best, mx - p)\nprint(best)\n",
        ),
    ],
)
add(
    "Missing Number",
    "EASY",
    "The numbers 1..n are given with exactly one missing. Find it.",
    "The first line contains n. The second line contains n-1 distinct integers from 1 to n.",
    "Print the missing number.",
    ["5\n1 2 4 5\n", "2\n2\n"],
    [
        (
            "Subtract the sum from n(n+1)/2.",
            "n = int(input())\nprint(n * (n + 1) // 2 - sum(map(int, input().split())))\n",
        ),
        (
            "XOR of 1..n and all values.",
            "n = int(input())\nx = 0\nfor i in range(1, n + 1):\n    x ^= i\nfor v in map(int, input().split()):\n    x ^= v\nprint(x)\n",
        ),
    ],
)
add(
    "Uppercase Count",
    "EASY",
    "Count uppercase letters in a line.",
    "A single line of printable characters.",
    "Print the count.",
    ["Hello World ABC\n"],
    [("Use str.isupper per character.", "print(sum(c.isupper() for c in input()))\n")],
)
add(
    "Triangle Check",
    "EASY",
    "Decide whether three lengths can form a non-degenerate triangle.",
    "A single line with a, b, c (1 <= a, b, c <= 10^9).",
    "Print YES or NO.",
    ["3 4 5\n", "1 2 3\n"],
    [
        (
            "Sort; the two smaller must sum to more than the largest.",
            "a, b, c = sorted(map(int, input().split()))\nprint('YES' if a + b > c else 'NO')\n",
        )
    ],
)
add(
    "Power Mod",
    "MEDIUM",
    "Compute a^b mod m.",
    "A single line with a, b, m (0 <= a, b <= 10^18, 1 <= m <= 10^9).",
    "Print a^b mod m.",
    ["2 10 1000\n", "3 0 7\n"],
    [
        ("Built-in three-argument pow.", "a, b, m = map(int, input().split())\nprint(pow(a, b, m))\n"),
        (
            "Binary exponentiation by hand.",
            "a, b, m = map(int, input().split())\nr = 1 % m\na %= m\nwhile b:\n    if b & 1:\n        r = r * a % m\n    a = a * a % m\n    b >>= 1\nprint(r)\n",
        ),
    ],
)
add(
    "Sort Strings By Length",
    "EASY",
    "Sort words by length, breaking ties alphabetically.",
    "The first line contains n. Each of the next n lines contains a word.",
    "Print the words in order, one per line.",
    ["4\npear\nfig\napple\nkiwi\n"],
    [
        (
            "Sort with key (len, word).",
            "n = int(input())\nw = [input().strip() for _ in range(n)]\nprint('\\n'.join(sorted(w, key=lambda s: (len(s), s))))\n",
        )
    ],
)
add(
    "Staircase",
    "EASY",
    "Print a right-aligned staircase of height n made of '#'.",
    "A single integer n (1 <= n <= 50).",
    "Print n lines; line i has n-i spaces then i '#' characters.",
    ["3\n"],
    [
        (
            "Build each line with string multiplication.",
            "n = int(input())\nfor i in range(1, n + 1):\n    print(' ' * (n - i) + '#' * i)\n",
        )
    ],
)
add(
    "Majority Element",
    "MEDIUM",
    "Print the value occurring more than n/2 times, or -1 if none exists.",
    "The first line contains n. The second line contains n integers.",
    "Print the majority value or -1.",
    ["5\n2 2 1 2 3\n", "4\n1 2 1 2\n"],
    [
        (
            "Boyer-Moore voting then verify.",
            "n = int(input())\na = list(map(int, input().split()))\ncand, c = None, 0\nfor x in a:\n    if c == 0:\n        cand, c = x, 1\n    elif x == cand:\n        c += 1\n    else:\n        c -= 1\nprint(cand if a.count(cand) * 2 > n else -1)\n",
        ),
        (
            "Count occurrences with a Counter.",
            "from collections import Counter\nn = int(input())\nv, c = Counter(input().split()).most_common(1)[0]\nprint(v if 2 * c > n else -1)\n",
        ),
    ],
)
add(
    "Distinct Count",
    "EASY",
    "Count distinct values among n integers.",
    "The first line contains n. The second line contains n integers.",
    "Print the number of distinct values.",
    ["6\n1 2 2 3 3 3\n"],
    [("Size of a set.", "input()\nprint(len(set(input().split())))\n")],
)
add(
    "Closest Pair Difference",
    "MEDIUM",
    "Find the minimum absolute difference between two elements at different positions.",
    "The first line contains n (n >= 2). The second line contains n integers.",
    "Print the minimum difference.",
    ["5\n10 3 8 20 4\n"],
    [
        (
            "After sorting, the closest pair is adjacent.",
            "input()\na = sorted(map(int, input().split()))\nprint(min(b - a_ for a_, b in zip(a, a[1:])))\n",
        )
    ],
)
add(
    "Alternating Case",
    "EASY",
    "Swap the case of every letter in the line; other characters stay the same.",
    "A single line of text.",
    "Print the transformed line.",
    ["Hello, World!\n"],
    [("str.swapcase.", "print(input().swapcase())\n")],
)
add(
    "Frog Jumps",
    "MEDIUM",
    "A frog on stone 1 can jump to stone i+1 or i+2, paying |h_i - h_j|. Find the minimum cost to reach stone n.",
    "The first line contains n (2 <= n <= 10^5). The second line contains heights h_1..h_n.",
    "Print the minimum total cost.",
    ["4\n10 30 40 20\n", "2\n10 10\n"],
    [
        (
            "DP over stones from left to right.",
            "n = int(input())\nh = list(map(int, input().split()))\ndp = [0] * n\nfor i in range(1, n):\n    dp[i] = dp[i - 1] + abs(h[i] - h[i - 1])\n    if i > 1:\n        dp[i] = min(dp[i], dp[i - 2] + abs(h[i] - h[i - 2]))\nprint(dp[-1])\n",
        ),
        (
            "Same DP keeping only the last two values.",
            "n = int(input())\nh = list(map(int, input().split()))\nprev2, prev1 = 0, 0\nfor i in range(1, n):\n    cur = prev1 + abs(h[i] - h[i - 1])\n    if i > 1:\n        cur = min(cur, prev2 + abs(h[i] - h[i - 2]))\n    prev2, prev1 = prev1, cur\nprint(prev1)\n",
        ),
    ],
)
add(
    "Digits Product",
    "EASY",
    "Print the product of the non-zero digits of n (1 if there are none).",
    "A single integer n (0 <= n <= 10^18).",
    "Print the product.",
    ["2051\n", "0\n"],
    [
        (
            "Multiply non-zero digits.",
            "p = 1\nfor c in input().strip():\n    if c != '0':\n        p *= int(c)\nprint(p)\n",
        )
    ],
)
add(
    "Queue Simulation",
    "MEDIUM",
    "Process q operations on a queue: 'push x' adds x, 'pop' removes and prints the front (or -1 if empty).",
    "The first line contains q. Each of the next q lines is an operation.",
    "For each pop print the result on its own line.",
    ["5\npush 3\npush 7\npop\npop\npop\n"],
    [
        (
            "collections.deque for O(1) pops.",
            "from collections import deque\nq = int(input())\nd = deque()\nout = []\nfor _ in range(q):\n    op = input().split()\n    if op[0] == 'push':\n        d.append(op[1])\n    else:\n        out.append(d.popleft() if d else '-1')\nprint('\\n'.join(out))\n",
        ),
        (
            "A list with a head pointer.",
            "q = int(input())\nbuf = []\nhead = 0\nfor _ in range(q):\n    op = input().split()\n    if op[0] == 'push':\n        buf.append(op[1])\n    elif head < len(buf):\n        print(buf[head])\n        head += 1\n    else:\n        print(-1)\n",
        ),
    ],
)
add(
    "Knapsack Small",
    "MEDIUM",
    "Given n items with weights and values and capacity W, maximize total value with total weight at most W.",
    "The first line contains n and W (W <= 10^4). Each of the next n lines contains w_i and v_i.",
    "Print the maximum value.",
    ["3 8\n3 30\n4 50\n5 60\n", "1 1\n2 5\n"],
    [
        (
            "0/1 knapsack DP over capacity, iterating capacity downward.",
            "n, W = map(int, input().split())\ndp = [0] * (W + 1)\nfor _ in range(n):\n    w, v = map(int, input().split())\n    for c in range(W, w - 1, -1):\n        dp[c] = max(dp[c], dp[c - w] + v)\nprint(dp[W])\n",
        )
    ],
)
add(
    "Vowel Removal",
    "EASY",
    "Remove all vowels (a, e, i, o, u) from s.",
    "A single line with a string s of lowercase letters.",
    "Print the resulting string (it may be empty).",
    ["education\n", "rhythm\n"],
    [
        ("Filter characters.", "print(''.join(c for c in input().strip() if c not in 'aeiou'))\n"),
        ("str.translate with a deletion table.", "print(input().strip().translate(str.maketrans('', '', 'aeiou')))\n"),
    ],
)
add(
    "Perfect Number",
    "EASY",
    "Decide whether n equals the sum of its proper divisors.",
    "A single integer n (1 <= n <= 10^8).",
    "Print YES or NO.",
    ["28\n", "12\n"],
    [
        (
            "Sum divisors in pairs up to sqrt(n).",
            "n = int(input())\ns = 0\ni = 1\nwhile i * i <= n:\n    if n % i == 0:\n        s += i\n        if i * i != n:\n            s += n // i\n    i += 1\nprint('YES' if s - n == n else 'NO')\n",
        )
    ],
)
add(
    "Sliding Window Max Sum",
    "MEDIUM",
    "Find the maximum sum of k consecutive elements.",
    "The first line contains n and k (1 <= k <= n). The second line contains n integers.",
    "Print the maximum window sum.",
    ["6 3\n1 -2 3 4 -1 2\n"],
    [
        (
            "Slide the window, adding the new and dropping the old element.",
            "n, k = map(int, input().split())\na = list(map(int, input().split()))\ns = sum(a[:k])\nbest = s\nfor i in range(k, n):\n    s += a[i] - a[i - k]\n    best = max(best, s)\nprint(best)\n",
        ),
        (
            "Prefix sums then max of p[i+k] - p[i].",
            "n, k = map(int, input().split())\np = [0]\nfor x in map(int, input().split()):\n    p.append(p[-1] + x)\nprint(max(p[i + k] - p[i] for i in range(n - k + 1)))\n",
        ),
    ],
)
add(
    "Time Conversion",
    "EASY",
    "Convert a number of seconds into H:MM:SS.",
    "A single integer s (0 <= s <= 10^6).",
    "Print hours, minutes and seconds as H:MM:SS.",
    ["3725\n", "59\n"],
    [
        (
            "divmod by 3600 then 60.",
            "s = int(input())\nh, r = divmod(s, 3600)\nm, s = divmod(r, 60)\nprint(f'{h}:{m:02d}:{s:02d}')\n",
        )
    ],
)
add(
    "Common Elements",
    "EASY",
    "Print the values present in both arrays, sorted ascending, without repetition (or NONE).",
    "The first line contains n and m. The second line has n integers, the third m integers.",
    "Print the common values separated by spaces, or NONE.",
    ["4 5\n1 2 3 4\n3 4 5 6 4\n", "1 1\n1\n2\n"],
    [
        (
            "Set intersection.",
            "input()\na = set(map(int, input().split()))\nb = set(map(int, input().split()))\nc = sorted(a & b)\nprint(' '.join(map(str, c)) if c else 'NONE')\n",
        )
    ],
)
add(
    "Spiral Border Sum",
    "EASY",
    "Print the sum of the border cells of an n x m matrix.",
    "The first line contains n and m. Then n lines with m integers.",
    "Print the sum of cells in the first/last row or column.",
    ["3 3\n1 2 3\n4 5 6\n7 8 9\n", "1 2\n5 6\n"],
    [
        (
            "Include a cell when it lies on the border.",
            "n, m = map(int, input().split())\ns = 0\nfor i in range(n):\n    row = list(map(int, input().split()))\n    for j in range(m):\n        if i in (0, n - 1) or j in (0, m - 1):\n            s += row[j]\nprint(s)\n",
        )
    ],
)


# ------------------------------------------------------------------------------------------------ VERY_EASY tier
# One-line programs. Train and test problems have the same shapes (read one value or two, print a function of it)
# with different functions, so what training teaches (read stdin, print only the answer, code only) carries over.

VE = "VERY_EASY"


def very_easy(title, legend, inp, outp, examples, code, think, split):
    add(title, VE, legend, inp, outp, examples, [(think, code)], split)


very_easy("Add Two Numbers", "Print the sum of two integers a and b.", "One line with two integers a and b.",
          "Print a + b.", ["2 3\n", "10 -4\n"], "a, b = map(int, input().split())\nprint(a + b)\n",
          "Read both numbers from one line and add them.", "train")
very_easy("Double It", "Print twice the integer n.", "One integer n.", "Print 2 * n.", ["4\n", "-7\n"],
          "n = int(input())\nprint(2 * n)\n", "Multiply by two.", "train")
very_easy("Square", "Print the square of the integer n.", "One integer n.", "Print n * n.", ["5\n", "-3\n"],
          "n = int(input())\nprint(n * n)\n", "Multiply n by itself.", "train")
very_easy("Add One", "Print the integer that follows n.", "One integer n.", "Print n + 1.", ["9\n", "-1\n"],
          "n = int(input())\nprint(n + 1)\n", "Add one.", "train")
very_easy("Subtract", "Print a minus b.", "One line with two integers a and b.", "Print a - b.", ["7 2\n", "3 10\n"],
          "a, b = map(int, input().split())\nprint(a - b)\n", "Subtract the second number from the first.", "train")
very_easy("Bigger of Two", "Print the larger of two integers.", "One line with two integers a and b.",
          "Print the larger one.", ["3 8\n", "5 -2\n"], "a, b = map(int, input().split())\nprint(max(a, b))\n",
          "max() picks the larger.", "train")
very_easy("Shout", "Print the word s in capital letters.", "One word s of lowercase letters.",
          "Print s in uppercase.", ["hello\n", "code\n"], "s = input().strip()\nprint(s.upper())\n",
          "str.upper() capitalises every letter.", "train")
very_easy("Word Length", "Print how many letters the word s has.", "One word s.", "Print the length of s.",
          ["apple\n", "hi\n"], "s = input().strip()\nprint(len(s))\n", "len() counts the characters.", "train")
very_easy("Last Letter", "Print the last letter of the word s.", "One word s.", "Print the last character of s.",
          ["python\n", "abc\n"], "s = input().strip()\nprint(s[-1])\n", "Index -1 is the last character.", "train")
very_easy("Say Hello", "Greet the person whose name is given.", "One word: a name.", "Print Hello, NAME!",
          ["Alice\n", "Bob\n"], "name = input().strip()\nprint(f'Hello, {name}!')\n",
          "Format the name into the greeting.", "train")
very_easy("Half", "Print n divided by 2, rounded down.", "One non-negative integer n.", "Print n // 2.",
          ["9\n", "10\n"], "n = int(input())\nprint(n // 2)\n", "Integer division rounds down.", "train")
very_easy("Absolute Value", "Print the absolute value of n.", "One integer n.", "Print |n|.", ["-5\n", "3\n"],
          "n = int(input())\nprint(abs(n))\n", "abs() drops the sign.", "train")
# held out (the demo's test split)
very_easy("Multiply Two Numbers", "Print the product of two integers a and b.", "One line with two integers a and b.",
          "Print a * b.", ["3 4\n", "-2 6\n"], "a, b = map(int, input().split())\nprint(a * b)\n",
          "Read both numbers and multiply them.", "test")
very_easy("Triple It", "Print three times the integer n.", "One integer n.", "Print 3 * n.", ["4\n", "-2\n"],
          "n = int(input())\nprint(3 * n)\n", "Multiply by three.", "test")
very_easy("Cube", "Print the cube of the integer n.", "One integer n.", "Print n * n * n.", ["3\n", "-2\n"],
          "n = int(input())\nprint(n ** 3)\n", "Raise n to the third power.", "test")
very_easy("Subtract One", "Print the integer before n.", "One integer n.", "Print n - 1.", ["9\n", "0\n"],
          "n = int(input())\nprint(n - 1)\n", "Subtract one.", "test")
very_easy("Smaller of Two", "Print the smaller of two integers.", "One line with two integers a and b.",
          "Print the smaller one.", ["3 8\n", "5 -2\n"], "a, b = map(int, input().split())\nprint(min(a, b))\n",
          "min() picks the smaller.", "test")
very_easy("Whisper", "Print the word s in lowercase letters.", "One word s of uppercase letters.",
          "Print s in lowercase.", ["HELLO\n", "CODE\n"], "s = input().strip()\nprint(s.lower())\n",
          "str.lower() lowers every letter.", "test")
very_easy("First Letter", "Print the first letter of the word s.", "One word s.", "Print the first character of s.",
          ["python\n", "abc\n"], "s = input().strip()\nprint(s[0])\n", "Index 0 is the first character.", "test")
very_easy("Say Goodbye", "Say goodbye to the person whose name is given.", "One word: a name.",
          "Print Goodbye, NAME!", ["Alice\n", "Bob\n"], "name = input().strip()\nprint(f'Goodbye, {name}!')\n",
          "Format the name into the farewell.", "test")
very_easy("Sum of Three", "Print the sum of three integers.", "One line with three integers a, b and c.",
          "Print a + b + c.", ["1 2 3\n", "10 -5 2\n"], "a, b, c = map(int, input().split())\nprint(a + b + c)\n",
          "Read the three numbers and add them.", "test")
# validation (the demo's selection uses the validation loss only to break pass@1 ties)
very_easy("Ten Times", "Print ten times the integer n.", "One integer n.", "Print 10 * n.", ["4\n", "-3\n"],
          "n = int(input())\nprint(10 * n)\n", "Multiply by ten.", "valid")
very_easy("Word Twice", "Print the word s twice, with no space between.", "One word s.", "Print s twice.",
          ["ab\n", "go\n"], "s = input().strip()\nprint(s + s)\n", "Concatenate s with itself.", "valid")


# A few problems get a third, structurally different solution.
EXTRA = {
    "Sum of Numbers": (
        "Reduce with operator.add over the parsed integers.",
        "import functools\nimport operator\n\ninput()\nprint(functools.reduce(operator.add, map(int, input().split()), 0))\n",
    ),
    "Reverse String": (
        "Push characters onto a stack and pop them back.",
        "s = list(input().strip())\nout = []\nwhile s:\n    out.append(s.pop())\nprint(''.join(out))\n",
    ),
    "Is Prime": (
        "Deterministic Miller-Rabin with small bases is exact for n < 3.4e14.",
        "def is_prime(n):\n    if n < 2:\n        return False\n    for p in (2, 3, 5, 7, 11, 13, 17):\n        if n % p == 0:\n            return n == p\n    d, r = n - 1, 0\n    while d % 2 == 0:\n        d //= 2\n        r += 1\n    for a in (2, 3, 5, 7, 11, 13, 17):\n        x = pow(a, d, n)\n        if x in (1, n - 1):\n            continue\n        for _ in range(r - 1):\n            x = x * x % n\n            if x == n - 1:\n                break\n        else:\n            return False\n    return True\n\n\nprint('YES' if is_prime(int(input())) else 'NO')\n",
    ),
    "Fibonacci": (
        "Fast doubling: F(2k) = F(k)(2F(k+1) - F(k)), F(2k+1) = F(k)^2 + F(k+1)^2.",
        "def fib(n):\n    if n == 0:\n        return 0, 1\n    a, b = fib(n // 2)\n    c = a * (2 * b - a)\n    d = a * a + b * b\n    return (d, c + d) if n % 2 else (c, d)\n\n\nprint(fib(int(input()))[0])\n",
    ),
}
for _p in P:
    if _p[0] in EXTRA:
        _p[6].append(EXTRA[_p[0]])


def run(code, stdin):
    r = subprocess.run([sys.executable, "-I", "-c", code], input=stdin, capture_output=True, text=True, timeout=10)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return "\n".join(ln.rstrip() for ln in r.stdout.strip().split("\n"))


def render(idx, title, legend, inp, outp, examples):
    head = f"{title}\n\n{legend}\n\nInput\n\n{inp}\n\nOutput\n\n{outp}\n\n"
    layout = idx % 3
    if layout == 0:
        label = "Examples" if len(examples) > 1 else "Example"
        parts = [f"Input\n\n{i.rstrip()}\n\nOutput\n\n{o}" for i, o in examples]
        return head + label + "\n\n" + "\n\n".join(parts) + "\n"
    if layout == 1:
        parts = [
            f"Sample Input {k}\n\n{i.rstrip()}\n\nSample Output {k}\n\n{o}" for k, (i, o) in enumerate(examples, 1)
        ]
        return head + "\n\n".join(parts) + "\n"
    parts = [f"Example {k}:\nInput: {i.rstrip()}\nOutput: {o}" for k, (i, o) in enumerate(examples, 1)]
    return head + "\n\n".join(parts) + "\n"


def main():
    n = len(P)
    rows = []
    assert all(p[7] is None for p in P[:N_CLASSIC]) and all(p[7] for p in P[N_CLASSIC:])
    for idx, (title, diff, legend, inp, outp, ex_inputs, sols, split) in enumerate(P):
        pid = f"sample-{idx + 1:03d}"
        if split is None:
            split = "train" if idx < N_CLASSIC - 12 else ("test" if idx < N_CLASSIC - 3 else "valid")
        examples = [(i, run(sols[0][1], i)) for i in ex_inputs]
        statement = render(idx, title, legend, inp, outp, examples)
        for k, (think, code) in enumerate(sols, 1):
            rows.append(
                {
                    "id": f"{pid}-{k}",
                    "problem_id": pid,
                    "input": statement,
                    "output": f"<think>\n{think}\n</think>\n```python\n{code}```",
                    "solution": code,
                    "split": split,
                    "difficulty": diff,
                    "source": "codelora-sample",
                    "license": "MIT",
                    "dataset": "codelora-sample",
                }
            )
    for path, keep in ((OUT, lambda r: r["difficulty"] != VE), (OUT_VERY_EASY, lambda r: r["difficulty"] == VE)):
        chosen = [r for r in rows if keep(r)]
        with path.open("w") as f:
            for r in chosen:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        print(f"{len({r['problem_id'] for r in chosen})} problems, {len(chosen)} rows -> {path}")


if __name__ == "__main__":
    main()
