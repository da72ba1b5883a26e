// common.glsl: what every edgelm compute shader shares.
//
// Specialization constants 0 and 1 are the workgroup size and the bound on
// subgroups per workgroup (see reduce.glsl); the host fills both from the
// device's (possibly emulated) limits. Bindings: 0..2 the sources, 3 the
// destination, 4 the per-call values (positions) the host rewrites before
// each submit, so recorded command buffers can be replayed.

layout(constant_id = 0) const uint WG = 64u;
layout(constant_id = 1) const uint NSG = 64u;
layout(local_size_x_id = 0) in;

layout(std430, binding = 4) readonly buffer DynBuf { int dyn[]; };

// Workgroups are laid out on x and y so that counts beyond the device's
// per-dimension limit still fit; z is left to the shader.
uint wg_linear() { return gl_WorkGroupID.x + gl_NumWorkGroups.x * gl_WorkGroupID.y; }

// Element offset of row r of a tensor (n, ne1, ne2, ne3) whose rows over
// dims 1..3 have strides s (in elements): r = i1 + ne1 * (i2 + ne2 * i3).
uint row_offset(uint r, uint ne1, uint ne2, uvec3 s) {
    uint q = r / ne1;
    return (r % ne1) * s.x + (q % ne2) * s.y + (q / ne2) * s.z;
}
