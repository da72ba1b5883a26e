/* cpu_info.h: the machine's CPU topology, as far as the thread pool needs it. */
#ifndef ELM_CPU_INFO_H
#define ELM_CPU_INFO_H

/* Fills cpus[0..max) with one logical CPU per physical core this process may
 * run on (the lowest-numbered sibling), in ascending order. Returns how many
 * it wrote, or 0 when the topology cannot be read. */
int elmi_cpu_core_cpus(int *cpus, int max);

#endif
