/* hallu train: flags -> hallu_train_config, a progress bar (or plain lines when
 * not a terminal), SIGINT/SIGTERM -> checkpoint and exit. */
#include "cli/args.h"
#include "cli/config_file.h"
#include "cli/commands.h"
#include "hallu/train.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

/* SIGINT/SIGTERM are taken by a thread of their own with sigwait, never by a
 * handler: oneDNN 2.x's JIT sgemm points rsp into the heap while it runs, and a
 * handler run on that thread writes its signal frame there (oneDNN issue #4845;
 * seen here as glibc aborts after Ctrl-C). The signals are blocked before any
 * thread exists, so every thread hallu starts inherits the mask. */
typedef struct signal_watch {
    sigset_t set;
    char checkpoint[1100];   /* out/checkpoint.hlu, named when quitting without saving */
    atomic_int stop;
    pthread_t thread;
} signal_watch;

static void *watch_signals(void *arg)
{
    signal_watch *w = arg;
#ifdef __linux__
    prctl(PR_SET_NAME, "hallu-signals");   /* named for top/gdb and for tests/resume_check.py */
#endif
    for (;;) {
        int sig;
        if (sigwait(&w->set, &sig) != 0)
            continue;
        const char *name = sig == SIGINT ? "SIGINT" : "SIGTERM";
        if (!atomic_exchange(&w->stop, 1)) {
            fprintf(stderr, "\nhallu train: %s: stopping after this step and saving a checkpoint"
                            " (again: quit at once without saving)\n", name);
            continue;
        }
        /* A user who asks twice does not want to wait for the step and the save.
         * Checkpoints are replaced by rename, so the last one saved stays whole. */
        int saved = access(w->checkpoint, F_OK) == 0;
        fprintf(stderr, "\nhallu train: %s again: quitting without saving; %s %s\n", name,
                saved ? "the last checkpoint saved is intact:" : "no checkpoint had been saved yet:",
                saved ? w->checkpoint : "--resume starts the run again");
        _exit(130);
    }
    return NULL;
}

static int signal_watch_start(signal_watch *w, const char *out)
{
    atomic_init(&w->stop, 0);
    snprintf(w->checkpoint, sizeof w->checkpoint, "%s/" HALLU_RUN_CHECKPOINT_FILE, out);
    sigemptyset(&w->set);
    sigaddset(&w->set, SIGINT);
    sigaddset(&w->set, SIGTERM);
    if (pthread_sigmask(SIG_BLOCK, &w->set, NULL) != 0 || pthread_create(&w->thread, NULL, watch_signals, w) != 0) {
        fprintf(stderr, "error: cannot set up SIGINT/SIGTERM handling (pthread_sigmask/pthread_create failed)\n");
        return -1;
    }
    return 0;
}

/* Only called after a successful signal_watch_start. The signals stay
 * blocked: one arriving after this point is ignored rather than killing a
 * process that is only printing its summary. */
static void signal_watch_stop(signal_watch *w)
{
    pthread_cancel(w->thread);   /* sigwait is a cancellation point */
    pthread_join(w->thread, NULL);
}

typedef struct progress_view {
    int tty;
    double last_print;
    const atomic_int *stop;
} progress_view;

static void format_eta(double s, char *buf, size_t n)
{
    int t = (int)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, n, "%dh%02dm", t / 3600, t / 60 % 60);
    else
        snprintf(buf, n, "%dm%02ds", t / 60, t % 60);
}

static void on_progress(void *user, const hallu_train_progress *p)
{
    progress_view *v = user;
    double now = hallu_now();
    int end_of_epoch = p->step_in_epoch == p->steps_per_epoch;
    if (!end_of_epoch && now - v->last_print < (v->tty ? 0.2 : 10.0))
        return;
    v->last_print = now;
    char eta[32], loss[48];
    format_eta(p->eta_seconds, eta, sizeof eta);
    /* The loss is read from the device on logged steps only (--log-every): say which step's it is. */
    if (p->loss_step == p->global_step)
        snprintf(loss, sizeof loss, "%.4f", p->loss);
    else
        snprintf(loss, sizeof loss, "%.4f (step %lld)", p->loss, (long long)p->loss_step);
    if (v->tty) {
        enum { WIDTH = 24 };
        int filled = (int)(WIDTH * (double)p->step_in_epoch / (double)(p->steps_per_epoch ? p->steps_per_epoch : 1));
        char bar[WIDTH + 1];
        for (int i = 0; i < WIDTH; i++)
            bar[i] = i < filled ? '#' : '.';
        bar[WIDTH] = '\0';
        fprintf(stderr, "\repoch %d/%d [%s] %lld/%lld loss %s lr %.4f %.0f img/s ETA %s   ", p->epoch + 1,
                p->epochs, bar, (long long)p->step_in_epoch, (long long)p->steps_per_epoch, loss, p->lr,
                p->images_per_s, eta);
        if (end_of_epoch)
            fprintf(stderr, "\n");
    } else {
        fprintf(stderr, "epoch %d/%d step %lld/%lld loss %s lr %.4f %.0f img/s data-wait %.0f%% ETA %s\n",
                p->epoch + 1, p->epochs, (long long)p->step_in_epoch, (long long)p->steps_per_epoch, loss, p->lr,
                p->images_per_s, 100.0 * p->data_wait_fraction, eta);
    }
    fflush(stderr);
}

static void on_message(void *user, const char *line)
{
    (void)user;
    fprintf(stderr, "%s\n", line);
}

static int on_should_stop(void *user)
{
    const progress_view *v = user;
    return atomic_load(v->stop);
}

static int run_training(hallu_train_config *c, int seed, int stop_after, const char *comm_name);

/* The run's last lines: what training gained over the untrained network, or
 * plainly that it lost ground, and what usually helps. */
static void report_gain(const hallu_train_config *c, const hallu_train_result *res)
{
    char text[600];
    int worse = hallu_train_gain_summary(c, res, text, sizeof text);
    if (worse < 0)
        return;
    if (!worse) {
        printf("%s\n", text);
        return;
    }
    fflush(stdout);   /* the warning comes last on a terminal too */
    fprintf(stderr, "%s\n", text);
}

/* Flags from --config go first, so the command line's own flags override them.
 * *merged stays NULL without --config; returns -1 (message printed) on a bad file. */
static int with_config_file(const cli_arg *args, int nargs, int argc, char **argv, cli_config_argv *file,
                            char ***merged, int *merged_argc)
{
    const char *path = cli_find_flag(argc, argv, "config");
    *merged = NULL;
    if (!path)
        return 0;
    static const char *const derived[] = { "image-size", NULL };   /* recorded, not a flag */
    char msg[700];
    if (cli_config_load(path, args, nargs, derived, file, msg, sizeof msg) != 0) {
        fprintf(stderr, "error: %s\n", msg);
        return -1;
    }
    if (!(*merged = cli_config_merge(file, argc, argv, merged_argc))) {
        fprintf(stderr, "error: --config %s: out of memory\n", path);
        cli_config_free(file);
        return -1;
    }
    return 0;
}

int cmd_train(int argc, char **argv)
{
    hallu_train_config c;
    hallu_train_config_default(&c);
    c.device = cli_default_device();
    if (!c.precision)
        c.precision = "fp32";   /* what NULL means, shown as --precision's default in --help */
    /* The backend's fault hook, for tests only (tests/fault_check.py): not a flag. */
    c.test_fault = getenv("HALLU_TEST_FAULT");
    int seed = (int)c.seed, stop_after = 0;
    const char *config_file = NULL, *comm_name = "auto";
    cli_arg args[] = {
        { "method", CLI_ARG_STR, &c.method, "simclr | mocov1 | mocov2 | simsiam" },
        { "hallucinator", CLI_ARG_BOOL, &c.hallucinator, "add the Hallucinator (on by default)" },
        { "no-hallucinator", CLI_ARG_CLEAR, &c.hallucinator, "train without the Hallucinator" },
        { "hal-init", CLI_ARG_STR, &c.hal_init, "reference (h = MLP([x,g]), the authors' wiring) | residual "
                                                "(h = g + MLP([x,g]), last layer zero; see docs/METHOD.md)" },
        { "hal-ratio-max", CLI_ARG_FLOAT, &c.hal_ratio_max, "extrapolation ratio r ~ U(0, max)" },
        { "hal-fixed-ratio", CLI_ARG_FLOAT, &c.hal_fixed_ratio, "fix r to this value (>= 0; ablations)" },
        { "hal-hidden", CLI_ARG_INT, &c.hal_hidden, "Hallucinator MLP width (0 = 2 x embedding width)" },
        { "enqueue-duplicates", CLI_ARG_BOOL, &c.enqueue_duplicates, "MoCo: enqueue the duplicated 2N keys (reference)" },
        { "mask-duplicates", CLI_ARG_BOOL, &c.mask_duplicates, "SimCLR: mask same-source duplicates from negatives" },
        { "fix-pred-lr", CLI_ARG_BOOL, &c.fix_pred_lr, "SimSiam: keep the predictor at the base lr (no cosine decay), "
                                                       "as the SimSiam paper's option" },
        { "temperature", CLI_ARG_FLOAT, &c.temperature, "loss temperature (0 = the method's default)" },
        { "base-temperature", CLI_ARG_FLOAT, &c.base_temperature, "SimCLR: scale the loss by temperature / base, "
                                                                  "as the authors' NT_Xent_dist (0.07); 0 = plain NT-Xent" },
        { "queue-size", CLI_ARG_INT, &c.queue_size, "MoCo queue length K (a multiple of the keys per step)" },
        { "moco-momentum", CLI_ARG_FLOAT, &c.moco_momentum, "MoCo key-encoder momentum m" },
        { "bn-splits", CLI_ARG_INT, &c.bn_splits, "MoCo Shuffle BN on one process: batch norm in G groups, the keys' "
          "groups drawn from a shuffled batch (as G devices); 1 = whole-batch BN" },
        { "proj-dim", CLI_ARG_INT, &c.proj_dim, "embedding width (0 = the method's default)" },
        { "data", CLI_ARG_STR, &c.data, "training data spec: synthetic[:N], cifar10:DIR, imagefolder:DIR, packed:FILE, ..." },
        { "knn-train-data", CLI_ARG_STR, &c.knn_train_data, "kNN reference set (default: --data, train split)" },
        { "knn-test-data", CLI_ARG_STR, &c.knn_test_data, "kNN held-out set (default: --data, test split)" },
        { "train-subset", CLI_ARG_INT, &c.train_subset, "use N evenly spaced training images (0 = all)" },
        { "arch", CLI_ARG_STR, &c.arch, "resnet18 | resnet34 | resnet50" },
        { "stem", CLI_ARG_STR, &c.stem, "cifar (3x3, no max-pool) | imagenet (7x7/2 + max-pool)" },
        { "init", CLI_ARG_STR, &c.init, "start the backbone from FILE.safetensors with torchvision's names "
          "(hallu export, also --heads, or a torchvision ResNet state dict): parameters and BN statistics; "
          "fc.* and the heads in it are ignored (the heads start fresh); recorded in config.json, so "
          "--resume does not need it" },
        { "crop", CLI_ARG_STR, &c.crop, "ccrop (view 1 ContrastiveCrop with a fixed box, view 2 RandomResizedCrop: "
          "the authors' recipe) | rrc (RandomResizedCrop(size, scale 0.2-1) on both views: SimCLR's)" },
        { "zero-init-residual", CLI_ARG_BOOL, &c.zero_init_residual, "start the last batch norm of each residual "
                                                                      "block at weight 0 (the authors' SimSiam config)" },
        { "optimizer", CLI_ARG_STR, &c.optimizer, "sgd | lars | adamw" },
        { "epochs", CLI_ARG_INT, &c.epochs, "training epochs (0: no step; save the initial checkpoint, e.g. of --init)" },
        { "batch-size", CLI_ARG_INT, &c.batch_size, "images per step" },
        { "lr", CLI_ARG_FLOAT, &c.lr, "peak learning rate (cosine schedule)" },
        { "warmup-epochs", CLI_ARG_INT, &c.warmup_epochs, "linear warm-up epochs" },
        { "momentum", CLI_ARG_FLOAT, &c.momentum, "optimizer momentum" },
        { "weight-decay", CLI_ARG_FLOAT, &c.weight_decay, "weight decay" },
        { "seed", CLI_ARG_INT, &seed, "random seed (same seed + threads = same result, bit for bit)" },
        { "threads", CLI_ARG_INT, &c.threads, "compute threads (0 = all cores)" },
        { "device", CLI_ARG_STR, &c.device, CLI_DEVICE_HELP },
        { "precision", CLI_ARG_STR, &c.precision, "fp32 | bf16: convolutions with bf16 products and fp32 accumulation "
          "(needs AVX512-BF16 or AMX); weights, optimizer, batch norm and losses stay fp32" },
        { "workers", CLI_ARG_INT, &c.workers, "data loading threads (per rank)" },
        { "comm", CLI_ARG_STR, &comm_name, "data-parallel communicator: auto (mpi when started by mpirun, else "
          "single) | single | mpi | nccl; run N ranks with mpirun -np N hallu train ... (README)" },
        { "sync-bn", CLI_ARG_BOOL, &c.sync_bn, "batch norm statistics over the global batch of all ranks (SyncBN); "
          "without it each rank normalises its own share" },
        { "dist-timeout", CLI_ARG_FLOAT, &c.dist_timeout, "seconds a rank waits for rank 0's kNN monitor or "
          "checkpoint before giving up (0 = no bound)" },
        { "bucket-mb", CLI_ARG_INT, &c.bucket_mb, "gradient all-reduce bucket in MiB (0 = 25)" },
        { "knn-every", CLI_ARG_INT, &c.knn_every, "kNN monitor every E epochs (0 = at the end only)" },
        { "knn-k", CLI_ARG_INT, &c.knn_k, "kNN neighbours" },
        { "knn-temperature", CLI_ARG_FLOAT, &c.knn_temperature, "kNN vote temperature" },
        { "no-knn-floor", CLI_ARG_CLEAR, &c.knn_at_start, "skip the kNN of the untrained network" },
        { "log-every", CLI_ARG_INT, &c.log_every, "steps between metrics.jsonl lines (the loss is read from the device, and checked, on those steps)" },
        { "save-every", CLI_ARG_INT, &c.save_every, "also keep checkpoint_epochN.hlu every N epochs (0 = off)" },
        { "keep-best", CLI_ARG_BOOL, &c.keep_best, "also keep checkpoint_best.hlu, saved after each epoch whose kNN "
          "top-1 beats every earlier one (kNN runs every --knn-every epochs and after the last)" },
        { "out", CLI_ARG_STR, &c.out, "run directory (must be new or empty unless --resume)" },
        { "resume", CLI_ARG_BOOL, &c.resume, "continue the run in --out from its checkpoint.hlu (one stopped before its first checkpoint starts again)" },
        { "config", CLI_ARG_STR, &config_file, "read flags from a JSON object, e.g. a run's config.json (flags given "
                                                "on the command line win)" },
        { "stop-after-steps", CLI_ARG_INT, &stop_after, "act as if interrupted after N steps (testing resume)" },
    };
    int nargs = (int)(sizeof args / sizeof args[0]), merged_argc = argc;
    cli_config_argv file = { NULL, 0 };
    char **merged = NULL;
    if (with_config_file(args, nargs, argc, argv, &file, &merged, &merged_argc) != 0)
        return 2;
    cli_parse_result r = cli_parse("hallu train [options]",
                                   "Self-supervised pre-training with optional Hallucinator; with no options, a short "
                                   "SimCLR + Hallucinator run on the built-in synthetic set, then kNN accuracy.",
                                   args, nargs, merged_argc, merged ? merged : argv, NULL, 0, NULL);
    int rc = r == CLI_PARSE_OK ? run_training(&c, seed, stop_after, comm_name) : r == CLI_PARSE_HELP ? 0 : 2;
    free(merged);
    cli_config_free(&file);   /* after the run: string flags point into it */
    return rc;
}

/* Threads per rank: "all cores" shared by the ranks on this host. */
static int threads_per_rank(const hallu_comm *comm)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int per = (int)(cores > 0 ? cores : 1) / (comm->local_size > 0 ? comm->local_size : 1);
    return per > 0 ? per : 1;
}

static int run_training(hallu_train_config *cp, int seed, int stop_after, const char *comm_name)
{
    hallu_train_config c = *cp;
    if (seed < 0) {
        fprintf(stderr, "error: --seed %d: expected a non-negative integer\n", seed);
        return 2;
    }
    c.seed = (uint64_t)seed;
    c.stop_after_steps = stop_after;
    signal_watch watch;
    if (signal_watch_start(&watch, c.out) != 0)   /* first: threads MPI starts inherit the signal mask */
        return 1;
    hallu_error err;
    hallu_error_clear(&err);
    hallu_comm *comm = NULL;
    if (hallu_comm_create(comm_name, &comm, &err) != HALLU_OK) {
        fprintf(stderr, "error: --comm %s: %s\n", comm_name, err.msg);
        signal_watch_stop(&watch);
        return 1;
    }
    c.comm = comm;
    if (c.threads == 0 && comm->local_size > 1)
        c.threads = threads_per_rank(comm);
    int root = comm->rank == 0;
    progress_view view = { .tty = isatty(STDERR_FILENO), .stop = &watch.stop };
    /* Rank 0 speaks for the job; the others print only their errors. */
    hallu_train_callbacks cb = { .progress = root ? on_progress : NULL, .message = root ? on_message : NULL,
                                 .should_stop = on_should_stop, .user = &view };
    hallu_train_result res;
    if (root)
        fprintf(stderr, "hallu train: %s%s on %s, %s/%s, %d epochs x batch %d -> %s\n", c.method,
                c.hallucinator ? " + Hallucinator" : "", c.data, c.arch, c.stem, c.epochs, c.batch_size, c.out);
    if (root && comm->size > 1)
        fprintf(stderr, "hallu train: %d ranks (%s), %d images per rank per step, %d threads per rank%s\n",
                comm->size, comm->ops->name, c.batch_size / comm->size, c.threads, c.sync_bn ? ", SyncBN" : "");
    hallu_status s = hallu_train_run(&c, &cb, &res, &err);
    signal_watch_stop(&watch);
    int ranks = comm->size, rank = comm->rank;
    hallu_comm_free(comm);
    if (s != HALLU_OK && !root)
        fprintf(stderr, "\nhallu train (rank %d of %d): %s%s\n", rank, ranks,
                s == HALLU_ERR_INTERRUPTED ? "" : "error: ", err.msg);
    if (s == HALLU_ERR_INTERRUPTED) {
        if (root)
            fprintf(stderr, "\n%s\n", err.msg);
        return 130;
    }
    if (s != HALLU_OK) {
        if (root)
            fprintf(stderr, "\nerror: %s\n", err.msg);
        return 1;
    }
    if (!root)
        return 0;
    if (res.collapsed)
        fprintf(stderr, "warning: the embeddings collapsed (see collapse_std in %s/" HALLU_RUN_METRICS_FILE ")\n", c.out);
    if (res.knn_floor_top1 >= 0)
        printf("untrained kNN top-1: %.2f%%\n", res.knn_floor_top1);
    if (res.steps > 0)   /* all digits: runs on two devices must agree bit for bit */
        printf("final loss: %.9g\n", res.final_loss);
    if (c.epochs == 0) {
        printf("no training step (--epochs 0): the initial weights are in %s/" HALLU_RUN_CHECKPOINT_FILE "\n", c.out);
        return 0;
    }
    if (res.knn_top1 < 0) {   /* no held-out set: no kNN monitor */
        printf("trained %d epochs, %lld steps (no kNN: no held-out set); run in %s\n", c.epochs,
               (long long)res.steps, c.out);
        return 0;
    }
    printf("kNN top-1 accuracy: %.2f%% (top-5 %.2f%%) after %d epochs, %lld steps; run in %s\n", res.knn_top1,
           res.knn_top5, c.epochs, (long long)res.steps, c.out);
    report_gain(&c, &res);
    return 0;
}
