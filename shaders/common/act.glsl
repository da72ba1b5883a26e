// act.glsl: the gate activations of BE_OP_GLU (backend.h), shared by
// binary.comp and the fused mat-vec's GLU epilogue so both round alike.

const float SQRT_2_OVER_PI = 0.79788456080286535588;

// 0.5 x (1 + tanh(y)) = x / (1 + exp(-2y)): no tanh (which overflows on
// some drivers), no cancellation in 1 + tanh(y) for negative y, and the
// clamped exponent keeps exp finite (x / 5.5e34 is 0 for every x of use).
float gelu_tanh(float x) {
    float y = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(min(-2.0 * y, 80.0)));
}

// act 0 (BE_GLU_SILU): silu; act 1 (BE_GLU_GELU_TANH): gelu, tanh form.
float glu_act(float x, uint act) { return act == 1u ? gelu_tanh(x) : x / (1.0 + exp(-x)); }
