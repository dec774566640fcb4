"""The CRC Unitree puts in LowCmd_ and LowState_ (the robot silently drops commands with a wrong one).

Definition: lay the message out as its little-endian, naturally aligned C struct (pad bytes zero,
see messages.LOWCMD_C / LOWSTATE_C), take every 32-bit little-endian word before the crc field,
and run CRC-32 with polynomial 0x04C11DB7, initial value 0xFFFFFFFF, each word fed most
significant bit first, no reflection, no final xor. That is CRC-32/MPEG-2 over each word's
big-endian bytes.

Speed: in Python a bit loop takes ~1 ms per LowCmd_ and a byte table ~0.25 ms, and this runs at
500 Hz in the control loop. So we use zlib's C CRC-32 through binascii.crc32, which is the
*reflected* variant of the same polynomial (CRC-32/ISO-HDLC: reflected input and output, init
0xFFFFFFFF, final xor 0xFFFFFFFF). Feeding a reflected CRC the bit-reversed bytes of a message
makes it process the original bits MSB first; its register then always holds the bit-reversal of
the non-reflected register (init 0xFFFFFFFF is its own reversal). So

    crc32_mpeg2(m) = rev32(binascii.crc32(rev8_each(m)) ^ 0xFFFFFFFF)

where the xor undoes binascii's final xor. The word CRC feeds it each word's big-endian bytes: a
numpy byteswap of the little-endian words, then the per-byte bit reversal (bytes.translate).
About 2.5 us per LowCmd_.
"""

from __future__ import annotations

import binascii

import numpy as np

from dit4dit_policy.g1.messages import LowCmd_, LowState_, lowcmd_to_c, lowstate_to_c

_REV8 = bytes(int(f"{b:08b}"[::-1], 2) for b in range(256))

LOWCMD_CRC_BYTES = 1000  # 250 words before LowCmd_.crc
LOWSTATE_CRC_BYTES = 2088  # 522 words before LowState_.crc


def _rev32(x: int) -> int:
    return int.from_bytes(x.to_bytes(4, "little").translate(_REV8), "big")


def crc32_mpeg2(data: bytes) -> int:
    """CRC-32/MPEG-2 of a byte string (poly 0x04C11DB7, init 0xFFFFFFFF, MSB first, no xorout)."""
    return _rev32(binascii.crc32(bytes(data).translate(_REV8)) ^ 0xFFFFFFFF)


def crc_words(buf: bytes | np.ndarray) -> int:
    """Unitree's CRC over a buffer of little-endian 32-bit words (length a multiple of 4)."""
    words = np.frombuffer(buf, dtype="<u4")  # raises if the length is not a multiple of 4
    return _rev32(binascii.crc32(words.byteswap().tobytes().translate(_REV8)) ^ 0xFFFFFFFF)


def lowcmd_crc_c(buf: np.ndarray) -> int:
    """CRC of a LowCmd_ held in its C layout (messages.lowcmd_to_c), ignoring the stored crc."""
    return crc_words(buf[:LOWCMD_CRC_BYTES])


def lowstate_crc_c(buf: np.ndarray) -> int:
    """CRC of a LowState_ held in its C layout (messages.lowstate_to_c), ignoring the stored crc."""
    return crc_words(buf[:LOWSTATE_CRC_BYTES])


def lowcmd_crc(cmd: LowCmd_) -> int:
    """The value LowCmd_.crc must hold for this command (its current crc field is ignored)."""
    return lowcmd_crc_c(lowcmd_to_c(cmd))


def lowstate_crc(state: LowState_) -> int:
    """The value LowState_.crc must hold for this state (its current crc field is ignored)."""
    return lowstate_crc_c(lowstate_to_c(state))
