/* cmd_devices.c: `edgelm devices`: every device edgelm can run on. */
#include <stdio.h>
#include <string.h>

#include "tools/cli.h"

static const char ABOUT[] =
    "Lists the CPU backend and every Vulkan device (CPU-type ones such as\n"
    "lavapipe included), with the limits edgelm plans by. The id column is\n"
    "the value --device takes. EDGELM_VK_LIMITS=PROFILE shows a device as a\n"
    "constrained profile would (pi5, mali, adreno, nofp16, nosubgroup,\n"
    "small-buffers).";

static void size_str(uint64_t b, char *out, size_t cap) {
    if (b >= (1ull << 30)) snprintf(out, cap, "%.1f GiB", (double)b / (1ull << 30));
    else if (b >= (1ull << 20)) snprintf(out, cap, "%.1f MiB", (double)b / (1ull << 20));
    else snprintf(out, cap, "%.1f KiB", (double)b / 1024.0);
}

static const char *yes(bool b) {
    return b ? "yes" : "no";
}

static void print_vulkan(const elm_device_info *d) {
    char a[32], b[32];
    printf("  driver: %s\n", d->driver);
    printf("  Vulkan API: %u.%u.%u\n", (d->api_version >> 22) & 0x7f, (d->api_version >> 12) & 0x3ff,
           d->api_version & 0xfff);
    for (uint32_t h = 0; h < d->n_heaps && h < ELM_MAX_HEAPS; h++) {
        size_str(d->heap_size[h], a, sizeof a);
        printf("  heap %u: %s%s", h, a, d->heap_device_local[h] ? " device-local" : "");
        if (d->heap_budget[h]) {
            size_str(d->heap_budget[h], b, sizeof b);
            printf(", budget %s", b);
        }
        printf("\n");
    }
    size_str(d->max_storage_buffer_range, a, sizeof a);
    size_str(d->max_memory_allocation_size, b, sizeof b);
    printf("  subgroup size: %u | shared memory: %u bytes\n", d->subgroup_size,
           d->shared_memory_bytes);
    printf("  maxStorageBufferRange: %s | maxMemoryAllocationSize: %s\n", a, b);
    printf("  fp16: %s | 16-bit storage: %s | 8-bit storage: %s | integer dot product: %s | "
           "subgroup arithmetic: %s | unified memory: %s\n",
           yes(d->fp16), yes(d->storage16), yes(d->storage8), yes(d->int_dot),
           yes(d->subgroup_arithmetic), yes(d->uma));
}

int cmd_devices(int argc, char **argv) {
    const cli_opt opts[] = {{0}};
    const cli_spec spec = {"devices", "", ABOUT, opts};
    int rc;
    if (!cli_parse(&spec, argc, argv, &rc)) return rc;
    elm_device_info devs[32];
    devs[0].struct_size = sizeof devs[0];
    size_t n = 0;
    elm_status st = elm_devices(devs, sizeof devs / sizeof *devs, &n);
    if (st != ELM_OK) return cli_lib_error("devices", st, NULL);
    if (n > sizeof devs / sizeof *devs) n = sizeof devs / sizeof *devs;
    for (size_t i = 0; i < n; i++) {
        const elm_device_info *d = &devs[i];
        printf("%s%-10s %s (%s, %s backend)\n", i ? "\n" : "", d->id, d->name, d->type, d->backend);
        if (strcmp(d->backend, "vulkan") == 0) print_vulkan(d);
        else printf("  threads: %u physical cores\n", d->n_threads);
    }
    return CLI_OK;
}
