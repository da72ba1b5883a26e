/*
 * layout.h: the block geometry of the weight types, shared by C and GLSL.
 *
 * quant.h builds its block structs on these numbers and checks every size
 * and field offset against them (_Static_assert); the shaders include this
 * file (shaders/common/blocks.glsl, through glslc's #include) instead of
 * repeating the numbers. It must therefore stay valid in both languages:
 * comments and plain integer #defines only.
 *
 * ELM_QK_<T>: values per block; ELM_QB_<T>: bytes per block;
 * ELM_OFF_<T>_<FIELD>: byte offset of a field inside the block.
 */
#ifndef ELM_QUANT_LAYOUT_H
#define ELM_QUANT_LAYOUT_H

#define ELM_QK_Q4_0 32
#define ELM_QB_Q4_0 18
#define ELM_OFF_Q4_0_QS 2

#define ELM_QK_Q4_1 32
#define ELM_QB_Q4_1 20
#define ELM_OFF_Q4_1_M 2
#define ELM_OFF_Q4_1_QS 4

#define ELM_QK_Q5_0 32
#define ELM_QB_Q5_0 22
#define ELM_OFF_Q5_0_QH 2
#define ELM_OFF_Q5_0_QS 6

#define ELM_QK_Q5_1 32
#define ELM_QB_Q5_1 24
#define ELM_OFF_Q5_1_M 2
#define ELM_OFF_Q5_1_QH 4
#define ELM_OFF_Q5_1_QS 8

#define ELM_QK_Q8_0 32
#define ELM_QB_Q8_0 34
#define ELM_OFF_Q8_0_QS 2

/* The super-block of the k-quants, and the packed 6-bit scales of Q3_K,
 * Q4_K and Q5_K. */
#define ELM_QK_K 256
#define ELM_K_SCALE_SIZE 12

#define ELM_QB_Q2_K 84
#define ELM_OFF_Q2_K_QS 16
#define ELM_OFF_Q2_K_D 80
#define ELM_OFF_Q2_K_DMIN 82

#define ELM_QB_Q3_K 110
#define ELM_OFF_Q3_K_QS 32
#define ELM_OFF_Q3_K_SCALES 96
#define ELM_OFF_Q3_K_D 108

#define ELM_QB_Q4_K 144
#define ELM_OFF_Q4_K_DMIN 2
#define ELM_OFF_Q4_K_SCALES 4
#define ELM_OFF_Q4_K_QS 16

#define ELM_QB_Q5_K 176
#define ELM_OFF_Q5_K_DMIN 2
#define ELM_OFF_Q5_K_SCALES 4
#define ELM_OFF_Q5_K_QH 16
#define ELM_OFF_Q5_K_QS 48

#define ELM_QB_Q6_K 210
#define ELM_OFF_Q6_K_QH 128
#define ELM_OFF_Q6_K_SCALES 192
#define ELM_OFF_Q6_K_D 208

#endif /* ELM_QUANT_LAYOUT_H */
