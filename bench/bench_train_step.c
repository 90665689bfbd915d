/* Training-step benchmark: ResNet-18 (CIFAR stem), 32x32, batch B, fp32,
 * forward + cross-entropy + backward + SGD (momentum, weight decay), T threads.
 * Runs hallu and the same step in PyTorch (bench_train_torch.py --serve, NCHW
 * and channels_last, in a child process) in this one invocation, step by step
 * in turn (hallu, NCHW, channels_last, hallu, ...), so that a neighbour's load
 * on a shared host falls on all three alike; prints images/s and the ratios,
 * plus hallu's fraction of this machine's fp32 GEMM peak (oneDNN sgemm
 * measured here, same threads). FLOPs are counted as for direct convolution
 * (the work PyTorch does); hallu's Winograd layers multiply 2.25x less, so the
 * fraction is an effective one and can pass 100%.
 * Images/s are batch / median step time, on every side. Memory: hallu's device
 * memory planned for the step, and each side's peak RSS (the PyTorch child's
 * holds both layouts' models and steps, and Python).
 * bf16 (issue 28): hallu with --precision bf16 and PyTorch under bf16
 * autocast run in the same rounds where the CPU has bf16 instructions; their
 * fraction is of this machine's bf16 peak, measured through the backend (the
 * better of a 1x1 bf16 convolution of 4096 x 2048 x 2048, i.e. a GEMM, and a
 * compute-bound 3x3 one: bf16_gflops), beside the rate of the bf16
 * dot-product instruction itself from registers (dpbf16_gflops), the ceiling
 * of any bf16 kernel on this CPU.
 * usage: bench_train_step [BATCH=256] [THREADS=2] [STEPS=5] [--no-torch]
 *        bench_train_step --peaks [THREADS=2]   (the machine lines only) */
#include "hallu/models.h"
#include "hallu/optim.h"
#include "hallu/rng.h"

#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The machine's fp32 GEMM speed through the backend's gemm (oneDNN's sgemm on
 * the cpu backend, its threads), 2048^3, best of three. */
static double sgemm_gflops(hallu_backend *be)
{
    const int n = 2048;
    size_t bytes = sizeof(float) * n * n;
    float *host = malloc(bytes);
    hallu_error err;
    float *a = be->ops->alloc(be, bytes, "bench gemm a", &err), *b = a ? be->ops->alloc(be, bytes, "bench gemm b", &err) : NULL;
    float *c = b ? be->ops->alloc(be, bytes, "bench gemm c", &err) : NULL;
    if (!host || !c) {
        fprintf(stderr, "bench: %s\n", host ? err.msg : "out of memory");
        exit(1);
    }
    for (int i = 0; i < n * n; i++)
        host[i] = (float)(i % 13) * 0.01f;
    be->ops->upload(be, a, host, bytes);
    for (int i = 0; i < n * n; i++)
        host[i] = (float)(i % 7) * 0.01f;
    be->ops->upload(be, b, host, bytes);
    be->ops->gemm(be, 0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
    double best = 0;
    for (int r = 0; r < 3; r++) {
        double t0 = hallu_now();
        be->ops->gemm(be, 0, 0, n, n, n, 1.0f, a, b, 0.0f, c);
        be->ops->download(be, host, c, sizeof(float));   /* waits for the gemm on an asynchronous device */
        double g = 2.0 * n * n * (double)n / (hallu_now() - t0) / 1e9;
        best = g > best ? g : best;
    }
    if (hallu_backend_check(be, &err) != HALLU_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    be->ops->release(be, a);
    be->ops->release(be, b);
    be->ops->release(be, c);
    free(host);
    return best;
}

/* Products a stride-1 "same" convolution makes along one dimension of hw
 * positions: the kernel taps that land inside the input. oneDNN's direct
 * kernels skip the taps on the zero padding, so counting them would overstate
 * the speed (at 8x8 with a 3x3 kernel, by 1.19x). */
static int64_t taps_inside(int hw, int k)
{
    int64_t taps = 0;
    for (int o = 0; o < hw; o++)
        for (int t = 0; t < k; t++)
            taps += o + t - k / 2 >= 0 && o + t - k / 2 < hw;
    return taps;
}

/* Best bf16 speed of one convolution shape through the backend (bf16 plan,
 * AMX or AVX512-BF16 by oneDNN): FLOPs per second of the forward's products
 * (those on the padding left out), best of three, the fp32 -> bf16 rounding of
 * x included. */
static double bf16_conv_gflops(hallu_backend *be, int n, int hw, int c, int k)
{
    hallu_error err;
    hallu_conv2d_geom g;
    hallu_conv2d_plan *plan = NULL;
    double best = 0;
    if (hallu_conv2d_geom_init(&g, n, hw, hw, c, c, k, 1, k / 2, &err) != HALLU_OK ||
        be->ops->conv2d_plan_create(be, &g, &plan, &err) != HALLU_OK)
        return 0;
    size_t nx = (size_t)n * hw * hw * c, nw = (size_t)c * c * k * k;
    float *x = be->ops->alloc(be, nx * 4, "bench x", &err), *w = be->ops->alloc(be, nw * 4, "bench w", &err);
    float *y = be->ops->alloc(be, nx * 4, "bench y", &err);
    if (x && w && y) {
        be->ops->fill(be, x, 0.5f, (int64_t)nx);
        be->ops->fill(be, w, 0.25f, (int64_t)nw);
        be->ops->conv2d_forward(plan, y, x, NULL, w);
        double taps = (double)taps_inside(hw, k);
        for (int r = 0; r < 3; r++) {
            double t0 = hallu_now();
            be->ops->conv2d_forward(plan, y, x, NULL, w);
            double gf = 2.0 * n * taps * taps * (double)c * c / (hallu_now() - t0) / 1e9;
            best = gf > best ? gf : best;
        }
    }
    if (x) be->ops->release(be, x);
    if (w) be->ops->release(be, w);
    if (y) be->ops->release(be, y);
    be->ops->conv2d_plan_free(plan);
    return best;
}

/* The machine's bf16 product speed through the backend: the better of a GEMM
 * (a 1x1 convolution of (64 x 8 x 8) x 2048 x 2048, where rounding x to bf16
 * and writing the fp32 output weigh) and a compute-bound 3x3 convolution
 * (256 images of 8x8 x 256 channels, ResNet-18's third stage, where they do
 * not); 0 when bf16 is unavailable. The 3x3 one as direct products
 * (HALLU_CPU_WINOGRAD=off): through bf16 Winograd, which multiplies 2.25x
 * less, its direct-convolution FLOPs would overstate the peak. */
static double bf16_gflops(int threads)
{
    hallu_error err;
    hallu_backend *be = NULL;
    if (hallu_backend_cpu_create(&be, threads, &err) != HALLU_OK)
        return 0;
    double best = 0;
    if (hallu_backend_set_precision(be, HALLU_PRECISION_BF16, &err) == HALLU_OK) {
        const char *mode = getenv("HALLU_CPU_WINOGRAD");
        char *keep = mode ? strdup(mode) : NULL;
        setenv("HALLU_CPU_WINOGRAD", "off", 1);   /* read at plan creation */
        double gemm = bf16_conv_gflops(be, 64, 8, 2048, 1), conv = bf16_conv_gflops(be, 256, 8, 256, 3);
        if (keep)
            setenv("HALLU_CPU_WINOGRAD", keep, 1);
        else
            unsetenv("HALLU_CPU_WINOGRAD");
        free(keep);
        best = gemm > conv ? gemm : conv;
    }
    hallu_backend_free(be);
    return best;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* One thread's AVX512-BF16 dot products from registers: 12 independent
 * accumulators (more than latency x issue width on the CPUs seen), no loads. */
__attribute__((target("avx512f,avx512bf16"))) static void *dpbf16_chains(void *iters_p)
{
    long iters = *(const long *)iters_p;
    __m512 acc[12];
    for (int i = 0; i < 12; i++)
        acc[i] = _mm512_setzero_ps();
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3f80), b = (__m512bh)_mm512_set1_epi16(0x0080);   /* 1, tiny */
    for (long it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++)   /* unrolled, so that acc stays in registers */
            acc[i] = _mm512_dpbf16_ps(acc[i], a, b);
        __asm__ volatile("" : "+v"(a));   /* keeps the loop from being folded */
    }
    float sum = 0;
    for (int i = 0; i < 12; i++)
        sum += _mm512_reduce_add_ps(acc[i]);
    __asm__ volatile("" : : "x"(sum));
    return NULL;
}

/* The bf16 dot-product instruction's rate on `threads` threads at once
 * (vdpbf16ps on 512 bits: 32 products = 64 FLOPs), best of three; 0 without
 * AVX512-BF16. */
static double dpbf16_gflops(int threads)
{
    if (!__builtin_cpu_supports("avx512bf16"))
        return 0;
    long iters = 20 * 1000 * 1000;
    pthread_t *tid = calloc((size_t)threads, sizeof *tid);
    double best = 0;
    for (int r = 0; r < 3 && tid; r++) {
        double t0 = hallu_now();
        int started = 0;
        while (started < threads && pthread_create(&tid[started], NULL, dpbf16_chains, &iters) == 0)
            started++;
        for (int i = 0; i < started; i++)
            pthread_join(tid[i], NULL);
        double g = (double)started * iters * 12 * 64 / (hallu_now() - t0) / 1e9;
        best = started == threads && g > best ? g : best;
    }
    free(tid);
    return best;
}
#else
static double dpbf16_gflops(int threads) { (void)threads; return 0; }
#endif

/* Peak resident set size in MiB of this process (RUSAGE_SELF) or of its
 * waited-for children (RUSAGE_CHILDREN). */
static double peak_rss_mib(int who)
{
    struct rusage ru;
    return getrusage(who, &ru) == 0 ? (double)ru.ru_maxrss / 1024.0 : 0.0;
}

/* Multiply-adds of ResNet-18-cifar forward for one 32x32 image (conv + fc). */
static double resnet18_cifar_flops_per_image(void)
{
    double macs = 32.0 * 32 * 64 * 3 * 9;                     /* stem */
    int hw[4] = { 32, 16, 8, 4 }, ch[4] = { 64, 128, 256, 512 };
    for (int l = 0; l < 4; l++) {
        double s = (double)hw[l] * hw[l];
        int cin = l ? ch[l - 1] : 64;
        macs += s * ch[l] * cin * 9 + s * ch[l] * ch[l] * 9;   /* block 0 */
        if (l)
            macs += s * ch[l] * cin;                            /* downsample 1x1 */
        macs += 2 * s * ch[l] * ch[l] * 9;                      /* block 1 */
    }
    macs += 512.0 * 10;
    return 2.0 * macs;                                          /* flops */
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* hallu's side: a ResNet-18 classifier with SGD on one fixed random batch. */
typedef struct hallu_side {
    hallu_backend *be;
    hallu_params ps;
    hallu_classifier clf;
    hallu_optimizer *opt;
    float *x;      /* device */
    int32_t *y;    /* host: the classifier uploads labels */
    int batch;
} hallu_side;

/* 0, or -1 (message printed) when the precision is unavailable here. */
static int hallu_side_create(hallu_side *h, int batch, int threads, hallu_precision precision)
{
    hallu_error err;
    hallu_resnet_config cfg;
    hallu_optim_config oc;
    memset(h, 0, sizeof *h);
    h->batch = batch;
    hallu_params_init(&h->ps);
    hallu_optim_config_default(&oc, HALLU_OPTIM_SGD);
    oc.momentum = 0.9;
    oc.weight_decay = 5e-4;
    if (hallu_backend_cpu_create(&h->be, threads, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    if (hallu_backend_set_precision(h->be, precision, &err) != HALLU_OK) {
        printf("hallu  %s: %s\n", hallu_precision_name(precision), err.msg);
        hallu_backend_free(h->be);
        h->be = NULL;
        return -1;
    }
    if (hallu_resnet_parse_arch("resnet18", "cifar", &cfg, &err) ||
        hallu_classifier_create(&h->clf, &cfg, 10, &h->ps, &err) || hallu_params_alloc(&h->ps, h->be, &err) ||
        hallu_classifier_plan(&h->clf, h->be, batch, 32, 32, &err) ||
        hallu_optimizer_create(&h->opt, &oc, &h->ps, &err) || hallu_classifier_init_weights(&h->clf, &h->ps, 0, &err)) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    size_t xbytes = sizeof(float) * batch * 32 * 32 * 3;
    float *x = malloc(xbytes);
    h->y = malloc(sizeof(int32_t) * batch);
    hallu_rng rng;
    hallu_rng_init(&rng, 0, 0);
    for (int i = 0; i < batch * 32 * 32 * 3; i++)
        x[i] = (float)hallu_rng_normal(&rng);
    for (int i = 0; i < batch; i++)
        h->y[i] = (int32_t)hallu_rng_below(&rng, 10);
    h->x = h->be->ops->alloc(h->be, xbytes, "bench batch", &err);
    if (!h->x || hallu_backend_upload(h->be, h->x, x, xbytes, &err) != HALLU_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    free(x);
    return 0;
}

/* One training step; returns its wall time in seconds. */
static double hallu_side_step(hallu_side *h)
{
    hallu_error err;
    hallu_nn_ctx ctx = { .be = h->be, .ps = &h->ps, .training = 1 };
    float loss;
    double t0 = hallu_now();
    hallu_params_zero_grad(&h->ps);
    if (hallu_classifier_step(&h->clf, &ctx, h->x, h->y, h->batch, &loss, &err) != HALLU_OK) {
        fprintf(stderr, "bench: %s\n", err.msg);
        exit(1);
    }
    hallu_optimizer_step(h->opt, &h->ps, 0.01);
    return hallu_now() - t0;
}

static void hallu_side_free(hallu_side *h)
{
    h->be->ops->release(h->be, h->x);
    free(h->y);
    hallu_optimizer_free(h->opt);
    hallu_classifier_free(&h->clf, h->be);
    hallu_params_free(&h->ps);
    hallu_backend_free(h->be);
}

/* The GLIBC_TUNABLES the PyTorch child runs with (NULL: unset). glibc's
 * default malloc gives PyTorch's large activations fresh mmap'd pages every
 * step: at batch 256 the page faults cost it ~60% of its speed here.
 * Transparent huge pages for malloc (glibc >= 2.35) are what a tuned PyTorch
 * setup gets from jemalloc/tcmalloc; HALLU_BENCH_TORCH_MALLOC=default measures
 * the untuned peer instead. A GLIBC_TUNABLES of the user's own wins. */
static const char *torch_glibc_tunables(void)
{
    const char *own = getenv("GLIBC_TUNABLES"), *mode = getenv("HALLU_BENCH_TORCH_MALLOC");
    if (own)
        return own;
    return mode && strcmp(mode, "default") == 0 ? NULL : "glibc.malloc.hugetlb=1";
}

/* PyTorch's side: bench_train_torch.py --serve in a child process; each request
 * line names a layout, each reply line is that step's wall time in seconds. */
typedef struct torch_side {
    pid_t pid;
    FILE *to, *from;
} torch_side;

static int torch_side_start(torch_side *t, int batch, int threads)
{
    int down[2], up[2];
    if (pipe(down) || pipe(up))
        return -1;
    char script[1024], b[16], th[16];
    snprintf(script, sizeof script, "%s/bench/bench_train_torch.py", HALLU_SOURCE_DIR);
    snprintf(b, sizeof b, "%d", batch);
    snprintf(th, sizeof th, "%d", threads);
    t->pid = fork();
    if (t->pid < 0)
        return -1;
    if (t->pid == 0) {
        const char *tunables = torch_glibc_tunables();
        if (tunables)
            setenv("GLIBC_TUNABLES", tunables, 1);
        dup2(down[0], 0);
        dup2(up[1], 1);
        close(down[1]);
        close(up[0]);
        execl("/usr/bin/python3", "python3", script, "--serve", b, th, (char *)NULL);
        _exit(127);
    }
    close(down[0]);
    close(up[1]);
    t->to = fdopen(down[1], "w");
    t->from = fdopen(up[0], "r");
    return t->to && t->from ? 0 : -1;
}

static double torch_side_step(torch_side *t, const char *layout)
{
    char line[128];
    double secs;
    fprintf(t->to, "%s\n", layout);
    fflush(t->to);
    if (!fgets(line, sizeof line, t->from) || sscanf(line, "%lf", &secs) != 1) {
        fprintf(stderr, "bench: no step time from bench_train_torch.py (is /usr/bin/python3 with torch installed?)\n");
        exit(1);
    }
    return secs;
}

static int torch_side_stop(torch_side *t)
{
    int status = 0;
    fclose(t->to);
    fclose(t->from);
    waitpid(t->pid, &status, 0);
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : 1;
}

/* Lets the side that just ran park its thread pools (OpenMP's spin
 * for a while after work) before the other side's step starts. */
static void settle(void)
{
    struct timespec ts = { 0, 300 * 1000 * 1000 };
    nanosleep(&ts, NULL);
}

/* Measures and prints the machine's peaks (the fp32 sgemm through `be`; with
 * bf16, the backend's bf16 products and the instruction's own rate). */
static void print_peaks(hallu_backend *be, int threads, int bf16, double *peak, double *peak_bf16)
{
    *peak = sgemm_gflops(be);
    *peak_bf16 = bf16 ? bf16_gflops(threads) : 0;
    double insn_bf16 = bf16 ? dpbf16_gflops(threads) : 0;
    printf("machine fp32 sgemm (oneDNN, %d threads): %.1f GFLOP/s\n", threads, *peak);
    if (bf16)
        printf("machine bf16 products (best of a 1x1 and a 3x3 bf16 convolution through the backend, %d threads): %.1f GFLOP/s\n",
               threads, *peak_bf16);
    if (insn_bf16 > 0)
        printf("machine AVX512-BF16 instruction rate (vdpbf16ps from registers, %d threads): %.1f GFLOP/s; the "
               "backend's bf16 peak above is %.0f%% of it (more where AMX makes the products)\n", threads, insn_bf16,
               100.0 * *peak_bf16 / insn_bf16);
}

/* --peaks [THREADS]: only the machine lines, and the FLOPs per image of the
 * ResNet-18 CIFAR forward they are quoted against (bench/ssl_step_precision.py
 * runs it in its own invocation, for its % of the peaks). */
static int peaks_only(int threads)
{
    hallu_error err;
    hallu_backend *be = NULL;
    if (threads < 1 || hallu_backend_cpu_create(&be, threads, &err) != HALLU_OK) {
        fprintf(stderr, "bench_train_step --peaks: %s\n", threads < 1 ? "THREADS must be >= 1" : err.msg);
        return 2;
    }
    /* whether the CPU has bf16 products (the sgemm below is fp32 whatever the precision) */
    int bf16 = hallu_backend_set_precision(be, HALLU_PRECISION_BF16, &err) == HALLU_OK;
    double peak, peak_bf16;
    print_peaks(be, threads, bf16, &peak, &peak_bf16);
    printf("ResNet-18/cifar forward: %.0f FLOPs per image (direct convolution)\n", resnet18_cifar_flops_per_image());
    hallu_backend_free(be);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc > 1 && strcmp(argv[1], "--peaks") == 0)
        return peaks_only(argc > 2 ? atoi(argv[2]) : 2);
    int batch = argc > 1 ? atoi(argv[1]) : 256, threads = argc > 2 ? atoi(argv[2]) : 2;
    int steps = argc > 3 ? atoi(argv[3]) : 5, torch = !(argc > 4 && strcmp(argv[4], "--no-torch") == 0);
    if (batch < 1 || threads < 1 || steps < 1) {
        fprintf(stderr, "usage: bench_train_step [BATCH>=1] [THREADS>=1] [STEPS>=1] [--no-torch]\n"
                        "       bench_train_step --peaks [THREADS>=1]\n");
        return 2;
    }
    hallu_side h, hb;
    hallu_side_create(&h, batch, threads, HALLU_PRECISION_FP32);
    size_t live = 0, planned = 0;   /* everything the step uses is allocated by now */
    hallu_backend_memory(h.be, &live, &planned);
    int bf16 = hallu_side_create(&hb, batch, threads, HALLU_PRECISION_BF16) == 0;
    torch_side t = { 0, NULL, NULL };
    if (torch && torch_side_start(&t, batch, threads) != 0) {
        perror("bench: starting bench_train_torch.py");
        return 1;
    }
    /* sides: hallu fp32, hallu bf16, then PyTorch's layouts (bf16 ones where the CPU has bf16) */
    static const char *layouts[4] = { "nchw", "channels_last", "nchw_bf16", "channels_last_bf16" };
    int nlayouts = torch ? (bf16 ? 4 : 2) : 0;
    double *secs = calloc((size_t)6 * steps, sizeof(double));
    for (int s = -1; s < steps; s++) {   /* round -1 is warm-up */
        double sh = hallu_side_step(&h), shb = 0, st[4] = { 0, 0, 0, 0 };
        if (bf16) {
            settle();
            shb = hallu_side_step(&hb);
        }
        for (int l = 0; l < nlayouts; l++) {
            settle();
            st[l] = torch_side_step(&t, layouts[l]);
        }
        settle();
        if (s >= 0) {
            secs[s] = sh;
            secs[steps + s] = shb;
            for (int l = 0; l < 4; l++)
                secs[(2 + l) * steps + s] = st[l];
        }
    }
    double rss_hallu = peak_rss_mib(RUSAGE_SELF);   /* before the GEMM measurement's matrices */
    double peak = 0, peak_bf16 = 0;
    print_peaks(h.be, threads, bf16, &peak, &peak_bf16);
    double ips = batch / median(secs, steps), ips_bf16 = bf16 ? batch / median(secs + steps, steps) : 0;
    double step_flops = 3.0 * resnet18_cifar_flops_per_image();   /* fwd + 2x bwd */
    printf("hallu  ResNet-18/cifar batch %d: %.1f images/s = %.1f GFLOP/s = %.0f%% of sgemm peak"
           " (direct-convolution FLOPs)\n", batch, ips,
           ips * step_flops / 1e9, 100.0 * ips * step_flops / 1e9 / peak);
    if (bf16)
        printf("hallu  bf16 (--precision bf16): %.1f images/s = %.0f%% of the bf16 peak; bf16 / fp32 = %.2fx\n",
               ips_bf16, 100.0 * ips_bf16 * step_flops / 1e9 / peak_bf16, ips_bf16 / ips);
    int rc = 0;
    if (torch) {
        const char *tunables = torch_glibc_tunables();
        double best_torch = 0;
        printf("torch  malloc: GLIBC_TUNABLES=%s\n", tunables ? tunables : "(unset: glibc defaults)");
        for (int l = 0; l < nlayouts; l++) {
            double tips = batch / median(secs + (l + 2) * steps, steps);
            int lb = l >= 2;
            best_torch = tips > best_torch ? tips : best_torch;
            printf("torch  %-18s %.1f images/s = %.0f%% of the %s peak; hallu fp32 / torch = %.2fx", layouts[l], tips,
                   100.0 * tips * step_flops / 1e9 / (lb ? peak_bf16 : peak), lb ? "bf16" : "sgemm", ips / tips);
            if (bf16)
                printf(", hallu bf16 / torch = %.2fx", ips_bf16 / tips);
            printf("\n");
        }
        if (bf16)
            printf("hallu bf16 / best torch configuration = %.2fx\n", ips_bf16 / best_torch);
        rc = torch_side_stop(&t);
    }
    printf("memory hallu: %.1f MiB device memory planned for the step, peak RSS %.1f MiB", (double)planned / (1 << 20),
           rss_hallu);
    if (torch)
        printf("; torch: peak RSS %.1f MiB (all layouts)", peak_rss_mib(RUSAGE_CHILDREN));
    printf("\n");
    free(secs);
    hallu_side_free(&h);
    if (bf16)
        hallu_side_free(&hb);
    return rc;
}
