// rope_angle.glsl: cos and sin of pos * 2 pi * turns_per_pos, accurate for
// large positions on devices whose sin/cos are only specified on [-pi, pi]
// and whose fma may not be fused.
//
// The angle is reduced in turns: fract(pos * F) is computed exactly by
// splitting pos and F into 12-bit halves (every partial product fits a
// float mantissa), so the only error left is F's own rounding.

float pos_turns(uint pos, float F) {
    precise float fh = uintBitsToFloat(floatBitsToUint(F) & 0xFFFFF000u);
    precise float fl = F - fh;
    precise float ph = float(pos >> 12) * 4096.0, pl = float(pos & 4095u);
    precise float a = fract(ph * fh), b = fract(ph * fl), c = fract(pl * fh), d = fract(pl * fl);
    return fract(fract(a + b) + fract(c + d));
}

// cos and sin of 2 pi u for u in [0, 1): quadrant from u, then Taylor
// polynomials on [-pi/4, pi/4] (errors below 3e-8).
vec2 cos_sin_turns(float u) {
    float q = round(4.0 * u);
    float r = (u - 0.25 * q) * 6.28318530717958648;
    float r2 = r * r;
    float s = r + r * r2 * (-1.0 / 6.0 + r2 * (1.0 / 120.0 + r2 * (-1.0 / 5040.0 + r2 * (1.0 / 362880.0))));
    float c = 1.0 + r2 * (-0.5 + r2 * (1.0 / 24.0 + r2 * (-1.0 / 720.0 + r2 * (1.0 / 40320.0))));
    uint k = uint(q) & 3u;
    if (k == 0u) return vec2(c, s);
    if (k == 1u) return vec2(-s, c);
    if (k == 2u) return vec2(-c, -s);
    return vec2(s, -c);
}
