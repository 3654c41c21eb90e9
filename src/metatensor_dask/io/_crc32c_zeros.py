"""The crc32c of bytes followed by zeros, and of a chunk whose zeros are replaced,
computed from checksums alone, without reading or hashing those bytes.

The crc32c of a message is, bit for bit, a polynomial over GF(2) (the message's bits,
with the first 32 of them inverted) times x^32, taken modulo the polynomial of crc32c,
then inverted. Appending ``count`` zero bytes multiplies that remainder by x^(8*count)
modulo the polynomial, which takes O(log(count)) multiplications of 32-bit
polynomials (:func:`extend_zeros`), however many zeros there are.

It follows that the crc32c is affine along each position of a message of fixed size:
two messages ``head + zeros`` and ``head + tail`` of the same size, where ``tail`` has
``count`` bytes, differ in their crc32c by ``crc32c(zeros) ^ crc32c(tail)``, whatever
``head`` is (:func:`replace_zeros`). A chunk whose stored rows are followed by zero
padding, and whose crc32c is known, thus gets the crc32c of its new content (the same
rows, then new rows and less padding) from the crc32c of what replaces the padding only.

The polynomials are held bit-reversed, as the crc32c computation itself holds them (the
coefficient of x^0 in the highest of 32 bits).
"""

from __future__ import annotations

from functools import lru_cache

__all__ = ["extend_zeros", "replace_zeros"]

_POLYNOMIAL = 0x82F63B78
"""The polynomial of crc32c (Castagnoli), bit-reversed, without its term x^32."""

_ONE = 1 << 31
"""The polynomial 1, bit-reversed."""

_MASK = 0xFFFFFFFF


def _multiply(a: int, b: int) -> int:
    """The product of the polynomials ``a`` and ``b`` modulo the crc32c polynomial."""
    product = 0
    bit = _ONE
    while a:
        if a & bit:
            product ^= b
            a ^= bit
        bit >>= 1
        # b times x, reduced
        b = (b >> 1) ^ _POLYNOMIAL if b & 1 else b >> 1
    return product


def _squares() -> list[int]:
    """x^(2^k) modulo the crc32c polynomial, for k from 0 to 63."""
    found = [_ONE >> 1]  # x
    for _ in range(63):
        found.append(_multiply(found[-1], found[-1]))
    return found


_POWERS = _squares()


@lru_cache(maxsize=4096)
def _x_to_bits(count: int) -> int:
    """x^(8*count) modulo the crc32c polynomial (``count`` below 2^61); remembered, as
    the same counts come back (the padding of chunks of the same shapes), and each costs
    about ten products in Python."""
    assert 0 <= count < 2**61, "a count of bytes"
    power, exponent, k = _ONE, 8 * count, 0
    while exponent:
        if exponent & 1:
            power = _multiply(power, _POWERS[k])
        exponent >>= 1
        k += 1
    return power


def extend_zeros(crc: int, count: int) -> int:
    """The crc32c of bytes whose crc32c is ``crc``, followed by ``count`` zero bytes
    (``crc`` 0 for no bytes: the crc32c of ``count`` zeros)."""
    return _multiply(_x_to_bits(count), crc ^ _MASK) ^ _MASK


def replace_zeros(crc: int, count: int, tail: int) -> int:
    """The crc32c of bytes ``head + zeros`` (``crc``, ending with ``count`` zero
    bytes) once those zeros are replaced by ``count`` bytes of crc32c ``tail``."""
    return crc ^ extend_zeros(0, count) ^ tail
