// reduce.glsl: workgroup-wide sum and max of one float per invocation.
//
// SG defined: subgroup arithmetic, then one partial per subgroup in shared
// memory. The subgroup size is whatever the device runs; NSG (a
// specialization constant, WG / the smallest subgroup size the device may
// use) bounds the number of subgroups. Without SG: a shared-memory tree,
// for devices without subgroup arithmetic (WG must be a power of two).
//
// Every invocation of the workgroup must call these in uniform control
// flow; all of them receive the result.

#if defined(SG)
#extension GL_KHR_shader_subgroup_basic : require
#extension GL_KHR_shader_subgroup_arithmetic : require
shared float red_buf[NSG];

float wg_sum(float v) {
    v = subgroupAdd(v);
    if (subgroupElect()) red_buf[gl_SubgroupID] = v;
    barrier();
    float t = 0.0;
    for (uint i = 0u; i < gl_NumSubgroups; i++) t += red_buf[i];
    barrier();
    return t;
}

float wg_max(float v) {
    v = subgroupMax(v);
    if (subgroupElect()) red_buf[gl_SubgroupID] = v;
    barrier();
    float t = red_buf[0];
    for (uint i = 1u; i < gl_NumSubgroups; i++) t = max(t, red_buf[i]);
    barrier();
    return t;
}

#else
shared float red_buf[WG];

float wg_sum(float v) {
    uint id = gl_LocalInvocationIndex;
    red_buf[id] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (id < s) red_buf[id] += red_buf[id + s];
        barrier();
    }
    float t = red_buf[0];
    barrier();
    return t;
}

float wg_max(float v) {
    uint id = gl_LocalInvocationIndex;
    red_buf[id] = v;
    barrier();
    for (uint s = WG / 2u; s > 0u; s >>= 1) {
        if (id < s) red_buf[id] = max(red_buf[id], red_buf[id + s]);
        barrier();
    }
    float t = red_buf[0];
    barrier();
    return t;
}
#endif
