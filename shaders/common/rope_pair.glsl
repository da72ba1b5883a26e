// rope_pair.glsl: pair i of a rotary embedding, shared by rope.comp and
// rope_kv.comp so that both give the same bits. Include it after a
// push-constant block `p` with neox, n_rot, has_ff, ff_base, yarn,
// log2_theta_scale, freq_scale, ext_factor, corr_low, corr_high, mscale
// and a buffer ff[] of frequency factors. Needs rope_angle.glsl.
//
// Following the CPU backend's formulas (backends/cpu/rope.c): for pair i
// at position pos,
//   theta = pos * base^(-2i/n_rot) / ff[i] * (freq_scale (1 - ramp) + ramp)
// with ramp the YaRN blend (0 without YaRN), and both cos and sin scaled
// by mscale. Pairs past n_rot / 2 are left as they are.

const float INV_2PI = 0.15915493667125702;

// Turns per position of pair i.
float pair_turns(uint i) {
    float f = exp2(float(i) * p.log2_theta_scale);
    if (p.has_ff != 0u) f /= ff[p.ff_base + i];
    float mix = p.freq_scale;
    if (p.yarn != 0u) {
        float y = (float(i) - p.corr_low) / max(0.001, p.corr_high - p.corr_low);
        float ramp = (1.0 - clamp(y, 0.0, 1.0)) * p.ext_factor;
        mix = p.freq_scale * (1.0 - ramp) + ramp;
    }
    return f * mix * INV_2PI;
}

bool pair_rotated(uint i) { return i < p.n_rot / 2u; }

// The offsets in a head of pair i's two values: NORM (2i, 2i + 1), NEOX
// (i, i + n_rot / 2); past the rotated pairs (2i, 2i + 1).
uvec2 pair_elems(uint i) {
    if (p.neox != 0u && pair_rotated(i)) return uvec2(i, i + p.n_rot / 2u);
    return uvec2(2u * i, 2u * i + 1u);
}

// Pair i of x at position pos, rotated (x itself past the rotated pairs).
vec2 pair_rotate(uint i, int pos, vec2 x) {
    if (!pair_rotated(i)) return x;
    vec2 cs = cos_sin_turns(pos_turns(uint(abs(pos)), pair_turns(i))) * p.mscale;
    if (pos < 0) cs.y = -cs.y;
    return vec2(x.x * cs.x - x.y * cs.y, x.x * cs.y + x.y * cs.x);
}
