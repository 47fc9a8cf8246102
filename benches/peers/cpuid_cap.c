/*
 * cpuid_cap: make a process see a CPU of a lower instruction-set level, so that ONNX Runtime
 * (whose MLAS kernels pick their variant from the `cpuid` instruction, with no switch to force
 * one) runs the kernels it would run on that CPU, as `SLIMNET_ISA` does for slimnet.
 *
 * Loaded with LD_PRELOAD and SLIMNET_CPUID_CAP=avx2|avx512|vnni, its constructor turns on CPUID
 * faulting for the process (Linux `arch_prctl(ARCH_SET_CPUID, 0)`, on CPUs and hypervisors that
 * offer it: the `cpuid_fault` flag of /proc/cpuinfo). From then on every `cpuid` instruction
 * traps; the SIGSEGV handler runs the real instruction with faulting briefly off, clears the
 * feature bits above the level, writes the result into the trapped thread's registers and
 * steps over the instruction. The setting is per thread and inherited by the threads created
 * after, so it must be loaded before the runtime starts its threads (LD_PRELOAD does that).
 *
 * Levels (as slimnet's): avx2 has no AVX-512, no AVX-VNNI and no AMX; avx512 is AVX-512
 * F/CD/BW/DQ/VL without VNNI, VBMI, BF16, FP16 or AMX (Skylake-SP); vnni adds VNNI, VBMI and
 * BF16, still without FP16 or AMX (Ice Lake-SP, Zen 4). Nothing is added that the CPU lacks.
 *
 * Built by benches/peers/isa_cap.py: cc -O2 -shared -fPIC -o libcpuid_cap.so cpuid_cap.c
 */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

/* 1 = avx2, 2 = avx512, 3 = vnni; 0 = off */
static int level;

static void real_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    __asm__ volatile("cpuid"
                     : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3])
                     : "a"(leaf), "c"(sub));
}

static void cap(uint32_t leaf, uint32_t sub, uint32_t r[4]) {
    if (leaf == 7 && sub == 0) {
        /* EDX: AMX-BF16, AVX512-FP16, AMX-TILE, AMX-INT8 */
        r[3] &= ~(BIT(22) | BIT(23) | BIT(24) | BIT(25));
        if (level < 3) {
            /* ECX: VBMI, VBMI2, VNNI, BITALG, VPOPCNTDQ; EDX: 4VNNIW, 4FMAPS, VP2INTERSECT;
             * EBX: IFMA */
            r[2] &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
            r[3] &= ~(BIT(2) | BIT(3) | BIT(8));
            r[1] &= ~BIT(21);
        }
        if (level < 2) {
            /* EBX: AVX-512 F, DQ, PF, ER, CD, BW, VL */
            r[1] &= ~(BIT(16) | BIT(17) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        }
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AMX-FP16; EDX: AMX-COMPLEX */
        r[0] &= ~BIT(21);
        r[3] &= ~BIT(8);
        if (level < 3) {
            /* EAX: AVX-VNNI, AVX512-BF16, AVX-IFMA; EDX: AVX-VNNI-INT8, AVX-NE-CONVERT,
             * AVX-VNNI-INT16, AVX10 */
            r[0] &= ~(BIT(4) | BIT(5) | BIT(23));
            r[3] &= ~(BIT(4) | BIT(5) | BIT(10) | BIT(19));
        }
    } else if (leaf == 0xd && sub == 0) {
        /* the state components the CPU can save: no tile state, no AVX-512 state below
         * avx512 */
        r[0] &= ~(BIT(17) | BIT(18));
        if (level < 2) {
            r[0] &= ~(BIT(5) | BIT(6) | BIT(7));
        }
    } else if (leaf == 0x1d || leaf == 0x1e || leaf == 0x24) {
        /* AMX palettes and TMUL information; AVX10 */
        r[0] = r[1] = r[2] = r[3] = 0;
    }
}

static void on_segv(int sig, siginfo_t *info, void *context) {
    (void)info;
    ucontext_t *uc = context;
    greg_t *g = uc->uc_mcontext.gregs;
    const uint8_t *ip = (const uint8_t *)g[REG_RIP];
    if (ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX], r[4];
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        real_cpuid(leaf, sub, r);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        cap(leaf, sub, r);
        g[REG_RAX] = r[0];
        g[REG_RBX] = r[1];
        g[REG_RCX] = r[2];
        g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        return;
    }
    /* a real fault: let it kill the process as it would have */
    signal(sig, SIG_DFL);
}

__attribute__((constructor)) static void cpuid_cap_init(void) {
    const char *name = getenv("SLIMNET_CPUID_CAP");
    if (!name || !*name) {
        return;
    }
    if (!strcmp(name, "avx2")) {
        level = 1;
    } else if (!strcmp(name, "avx512")) {
        level = 2;
    } else if (!strcmp(name, "vnni")) {
        level = 3;
    } else {
        fprintf(stderr, "cpuid_cap: SLIMNET_CPUID_CAP=%s is not avx2, avx512 or vnni\n", name);
        exit(2);
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0 || syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0) {
        fprintf(stderr,
                "cpuid_cap: this CPU or hypervisor does not let a process trap cpuid "
                "(no cpuid_fault in /proc/cpuinfo); cannot cap at %s\n",
                name);
        exit(2);
    }
}
