#define _GNU_SOURCE
#include "backends/cpu/cpu_info.h"

#include <sched.h>
#include <stdio.h>
#include <unistd.h>

#include "backends/backend.h"

#define MAX_CPUS CPU_SETSIZE

static long read_topology(int cpu, const char *field) {
    char path[128];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu%d/topology/%s", cpu, field);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    long v = -1;
    if (fscanf(f, "%ld", &v) != 1) v = -1;
    fclose(f);
    return v;
}

/* The CPUs this process may use; all of them when the mask is unknown, so
 * that a failing sched_getaffinity still lets the topology count cores. */
static void allowed_cpus(cpu_set_t *set) {
    if (sched_getaffinity(0, sizeof *set, set) == 0) return;
    CPU_ZERO(set);
    for (int i = 0; i < MAX_CPUS; i++) CPU_SET(i, set);
}

int elmi_cpu_core_cpus(int *cpus, int max) {
    long pkg[MAX_CPUS], core[MAX_CPUS];
    cpu_set_t set;
    allowed_cpus(&set);
    int n = 0, seen = 0;
    for (int cpu = 0; cpu < MAX_CPUS && n < max; cpu++) {
        if (!CPU_ISSET(cpu, &set)) continue;
        long p = read_topology(cpu, "physical_package_id");
        long c = read_topology(cpu, "core_id");
        if (p < 0 || c < 0) continue;
        int dup = 0;
        for (int i = 0; i < seen && !dup; i++) dup = pkg[i] == p && core[i] == c;
        if (dup) continue;
        pkg[seen] = p;
        core[seen] = c;
        seen++;
        cpus[n++] = cpu;
    }
    return n;
}

int elmi_be_cpu_physical_cores(void) {
    int cpus[MAX_CPUS];
    int n = elmi_cpu_core_cpus(cpus, MAX_CPUS);
    if (n > 0) return n;
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}
