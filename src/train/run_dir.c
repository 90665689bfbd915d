/* The run directory: refuse to overwrite a previous run, record the resolved
 * config, and cut metrics back to a checkpoint on resume. */
#include "train_internal.h"
#include "hallu/io.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static int is_dot_entry(const char *name)
{
    return strcmp(name, ".") == 0 || strcmp(name, "..") == 0;
}

/* What a run leaves before its first checkpoint: its config, its metrics and
 * the temp files of an atomic write cut short. */
static int is_unsaved_run_entry(const char *name)
{
    return is_dot_entry(name) || strcmp(name, HALLU_RUN_CONFIG_FILE) == 0 || strcmp(name, HALLU_RUN_METRICS_FILE) == 0 ||
           strstr(name, ".tmp.") != NULL;
}

/* 1 when every entry of the directory passes allowed (or it cannot be read). */
static int dir_holds_only(const char *path, int (*allowed)(const char *name))
{
    DIR *d = opendir(path);
    if (!d)
        return 1;
    struct dirent *e;
    int only = 1;
    while ((e = readdir(d)) && only)
        only = allowed(e->d_name);
    closedir(d);
    return only;
}

/* mkdir -p: a user naming runs/2026/exp1 expects the folders to appear. */
static int make_dir_and_parents(const char *path)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf) {
        errno = ENAMETOOLONG;
        return -1;
    }
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, 0755) != 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Why a new run will not start in a non-empty --out, and what would work:
 * --resume helps only where a run of ours is. */
static hallu_status refuse_used_out(const train_run *run, hallu_error *err)
{
    const char *out = run->cfg->out, *what, *advice;
    struct stat sb;
    if (stat(run->path_checkpoint, &sb) == 0) {
        what = "it holds a run (" HALLU_RUN_CHECKPOINT_FILE ")";
        advice = "pass --resume to continue it or choose another --out";
    } else if (dir_holds_only(out, is_unsaved_run_entry)) {
        what = "it holds a run stopped before its first checkpoint";
        advice = "pass --resume to start it again or choose another --out";
    } else {
        what = "it holds files other than a run's";
        advice = "choose another --out";
    }
    return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--out %s is not empty: %s; %s (nothing was overwritten)", out,
                           what, advice);
}

void train_epoch_checkpoint_path(const train_run *run, int epoch, char path[TRAIN_RUN_PATH_CAP])
{
    snprintf(path, TRAIN_RUN_PATH_CAP, "%s/" HALLU_RUN_EPOCH_CHECKPOINT_FORMAT, run->cfg->out, epoch);
}

hallu_status train_prepare_dir(train_run *run, hallu_error *err)
{
    const char *out = run->cfg->out;
    struct stat sb;
    int exists = stat(out, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--out %s exists and is not a directory", out);
    /* Refused here once so that no run file's path is ever cut short by the
     * buffers below (a cut path would write a file under another name). */
    size_t longest = strlen(out) + 1 + TRAIN_RUN_FILE_NAME_MAX;
    if (longest >= sizeof run->path_checkpoint)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--out %.60s...: %zu characters is too long (at most %zu)",
                               out, strlen(out), sizeof run->path_checkpoint - 2 - TRAIN_RUN_FILE_NAME_MAX);
    snprintf(run->path_checkpoint, sizeof run->path_checkpoint, "%s/" HALLU_RUN_CHECKPOINT_FILE, out);
    snprintf(run->path_metrics, sizeof run->path_metrics, "%s/" HALLU_RUN_METRICS_FILE, out);
    snprintf(run->path_config, sizeof run->path_config, "%s/" HALLU_RUN_CONFIG_FILE, out);
    snprintf(run->path_best, sizeof run->path_best, "%s/" HALLU_RUN_BEST_CHECKPOINT_FILE, out);
    if (run->cfg->resume) {
        run->resuming = stat(run->path_checkpoint, &sb) == 0;
        if (run->resuming)
            return HALLU_OK;
        /* A run killed before its first checkpoint saved nothing to continue:
         * start it again rather than leave the user between "no checkpoint"
         * and "not empty". Its old metrics go; every step will be rerun. */
        if (!exists || !dir_holds_only(out, is_unsaved_run_entry))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--resume: no checkpoint at %s%s", run->path_checkpoint,
                                   exists ? " and the directory holds files other than a run's" : "");
        return HALLU_OK;   /* train_create_dir empties its metrics */
    }
    if (exists && !dir_holds_only(out, is_dot_entry))
        return refuse_used_out(run, err);
    return HALLU_OK;
}

hallu_status train_create_dir(train_run *run, hallu_error *err)
{
    if (run->resuming)
        return HALLU_OK;
    if (run->cfg->resume)   /* starting again from step 0 */
        return hallu_atomic_write(run->path_metrics, "", 0, err);
    if (make_dir_and_parents(run->cfg->out) != 0)
        return hallu_error_set(err, HALLU_ERR_IO, "cannot create run directory %s: %s", run->cfg->out, strerror(errno));
    return HALLU_OK;
}

/* The JSON literal of s ("..." with escapes) into out; 0 when it does not fit. */
static int quote(char *out, size_t size, const char *s)
{
    return hallu_json_escape(out, size, s ? s : "") < size;
}

hallu_status train_write_config(train_run *run, hallu_error *err)
{
    const hallu_train_config *c = run->cfg;
    char method[64], init[64], data[1100], arch[64], stem[64], opt[64], crop[64];
    if (!quote(method, sizeof method, c->method) || !quote(init, sizeof init, c->hal_init) ||
        !quote(data, sizeof data, c->data) || !quote(arch, sizeof arch, c->arch) ||
        !quote(stem, sizeof stem, c->stem) || !quote(opt, sizeof opt, c->optimizer) ||
        !quote(crop, sizeof crop, c->crop ? c->crop : "ccrop"))
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "config too long to record (data spec '%s'?)", c->data);
    int n = snprintf(run->config_json, sizeof run->config_json,
        "{\"method\": %s, \"hallucinator\": %d, \"hal_init\": %s, \"hal_ratio_max\": %.9g, "
        "\"hal_fixed_ratio\": %.9g, \"hal_hidden\": %d, \"enqueue_duplicates\": %d, \"mask_duplicates\": %d, "
        "\"fix_pred_lr\": %d, \"temperature\": %.9g, \"base_temperature\": %.9g, \"queue_size\": %d, "
        "\"moco_momentum\": %.9g, \"bn_splits\": %d, \"proj_dim\": %d, \"data\": %s, \"train_subset\": %d, \"arch\": %s, "
        "\"stem\": %s, \"zero_init_residual\": %d, \"crop\": %s, \"optimizer\": %s, \"epochs\": %d, \"batch_size\": %d, "
        "\"warmup_epochs\": %d, \"lr\": %.9g, \"momentum\": %.9g, \"weight_decay\": %.9g, \"seed\": %llu, "
        "\"threads\": %d, \"image_size\": [%d, %d]}",
        method, c->hallucinator, init, c->hal_ratio_max, c->hal_fixed_ratio, run->ssl_cfg.hal_hidden,
        c->enqueue_duplicates, c->mask_duplicates, c->fix_pred_lr, run->ssl_cfg.temperature, c->base_temperature,
        run->ssl_cfg.queue_size, run->ssl_cfg.momentum, run->ssl_cfg.bn_splits, run->ssl_cfg.proj_dim, data, c->train_subset, arch, stem,
        c->zero_init_residual, crop, opt, c->epochs, c->batch_size, c->warmup_epochs, c->lr, c->momentum, c->weight_decay,
        (unsigned long long)c->seed, c->threads, run->image_h, run->image_w);
    /* Recorded only when not the default, so that earlier runs' configs read as before. */
    char extra[96] = "";
    int bf16 = c->precision && strcmp(c->precision, "fp32") != 0;
    snprintf(extra, sizeof extra, "%s%s%.16s%s", c->sync_bn ? ", \"sync_bn\": 1" : "", bf16 ? ", \"precision\": \"" : "",
             bf16 ? c->precision : "", bf16 ? "\"" : "");
    if (extra[0] && n > 0 && (size_t)n < sizeof run->config_json)   /* before the closing brace */
        n = n - 1 + snprintf(run->config_json + n - 1, sizeof run->config_json - (size_t)(n - 1), "%s}", extra);
    if (n < 0 || (size_t)n >= sizeof run->config_json)
        return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "config too long to record (data spec '%s'?)", c->data);
    if (run->resuming || !train_is_root(run))   /* rank 0 writes the run's files */
        return HALLU_OK;
    /* config.json also records --init, which the checkpoint's config leaves out:
     * a resume reads the weights from the checkpoint, not from that file. */
    char line[sizeof run->config_json + 2 * TRAIN_RUN_PATH_CAP + 32], path[2 * TRAIN_RUN_PATH_CAP + 8];
    if (!run->init_path[0]) {
        snprintf(line, sizeof line, "%s\n", run->config_json);
    } else {
        if (!quote(path, sizeof path, run->init_path))
            return hallu_error_set(err, HALLU_ERR_INVALID_ARG, "--init %.60s...: too long to record", run->init_path);
        snprintf(line, sizeof line, "%.*s, \"init\": %s}\n", n - 1, run->config_json, path);
    }
    return hallu_atomic_write(run->path_config, line, strlen(line), err);
}

static int64_t line_step(const char *line)
{
    const char *p = strstr(line, "\"step\":");
    return p ? strtoll(p + 7, NULL, 10) : -1;
}

hallu_status train_truncate_metrics(const char *path, int64_t last_step, hallu_error *err)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return HALLU_OK;
    size_t cap = 1 << 16, len = 0;
    char *kept = malloc(cap), line[4096];
    hallu_status s = kept ? HALLU_OK : hallu_error_set(err, HALLU_ERR_OOM, "reading %s: out of memory", path);
    while (s == HALLU_OK && fgets(line, sizeof line, f)) {
        if (line_step(line) > last_step || !strchr(line, '\n'))
            continue;   /* written after the checkpoint, or torn by a crash */
        size_t n = strlen(line);
        if (len + n > cap) {
            char *grown = realloc(kept, cap *= 2);
            if (!grown) {
                s = hallu_error_set(err, HALLU_ERR_OOM, "reading %s: out of memory", path);
                break;
            }
            kept = grown;
        }
        memcpy(kept + len, line, n);
        len += n;
    }
    fclose(f);
    if (s == HALLU_OK)
        s = hallu_atomic_write(path, kept, len, err);
    free(kept);
    return s;
}
