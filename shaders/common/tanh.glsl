// tanh.glsl: tanh that stays finite for every finite argument.
//
// The built-in tanh may be lowered to (exp(2x) - 1) / (exp(2x) + 1), which
// is inf / inf = NaN once exp(2x) overflows (|x| above ~44) on some
// drivers. Here: an odd Taylor polynomial for |x| < 0.25 (where 1 - e
// would cancel; truncation below 1e-10 relative), else (1 - e) / (1 + e)
// with e = exp(-2|x|) in (0, 0.61], which never overflows and reaches
// exactly 1 for large |x|. NaN stays NaN.

float tanh_safe(float x) {
    float a = abs(x), r;
    if (a < 0.25) {
        float a2 = a * a;
        r = a + a * a2 * (-1.0 / 3.0 + a2 * (2.0 / 15.0 + a2 * (-17.0 / 315.0 +
                a2 * (62.0 / 2835.0 + a2 * (-1382.0 / 155925.0 + a2 * (21844.0 / 6081075.0))))));
    } else {
        float e = exp(-2.0 * a);
        r = (1.0 - e) / (1.0 + e);
    }
    return x < 0.0 ? -r : r;
}
