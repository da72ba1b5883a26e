// half.glsl: F32 to IEEE half bits with round-to-nearest-even, in integer
// arithmetic, because the rounding of the built-in conversions is left to
// the implementation and the cache must match the CPU backend's bits.

uint f32_to_f16_rne(float f) {
    uint b = floatBitsToUint(f);
    uint sign = (b >> 16) & 0x8000u, ax = b & 0x7FFFFFFFu;
    if (ax >= 0x7F800000u) return sign | (ax > 0x7F800000u ? 0x7E00u | ((ax >> 13) & 0x3FFu) : 0x7C00u);
    if (ax >= 0x477FF000u) return sign | 0x7C00u; // rounds to infinity
    if (ax < 0x38800000u) {                       // subnormal half (or zero)
        if (ax < 0x33000000u) return sign;         // below half the smallest subnormal
        uint m = (ax & 0x7FFFFFu) | 0x800000u;
        uint shift = 126u - (ax >> 23) ; // 14 .. 24 more bits to drop
        uint r = m >> shift, rem = m & ((1u << shift) - 1u), half_ulp = 1u << (shift - 1u);
        if (rem > half_ulp || (rem == half_ulp && (r & 1u) != 0u)) r++;
        return sign | r;
    }
    uint v = ax - 0x38000000u; // rebias exponent 127 -> 15, keep 23 mantissa bits
    uint r = v >> 13, rem = v & 0x1FFFu;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u) != 0u)) r++;
    return sign | r;
}
