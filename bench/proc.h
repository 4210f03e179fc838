/* SPDX-License-Identifier: MIT */
/*
 * What the load generators read of the server they measure in /proc.
 */
#ifndef BENCH_PROC_H
#define BENCH_PROC_H

/*
 * The CPU time process @pid has used, all threads: utime + stime of
 * /proc/PID/stat, in seconds (clock-tick resolution, 10 ms here).
 * Returns -1 when @pid is <= 0 or its stat cannot be read.
 */
double proc_cpu_s(int pid);

#endif
