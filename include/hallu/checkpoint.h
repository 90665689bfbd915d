/* Checkpoints: one self-describing file per save. The container is safetensors
 * (so PyTorch can inspect it), with metadata
 *   format = "hallu-checkpoint", version = "1", checksum = FNV-1a 64 (hex) over
 *   every tensor (name bytes, then data bytes) in name order,
 * plus whatever the writer adds (config JSON, epoch, step, arch, stem, method).
 * Tensors: "model.<name>" (trainable params and BN state, torchvision names under
 * "encoder.", "projector.", ...), "optim.*", "ssl.*" (key encoder, queue, RNG).
 * Written atomically; opening verifies format, version and checksum. */
#ifndef HALLU_CHECKPOINT_H
#define HALLU_CHECKPOINT_H

#include "hallu/io.h"
#include "hallu/models.h"

#ifdef __cplusplus
extern "C" {
#endif

#define HALLU_CHECKPOINT_FORMAT "hallu-checkpoint"
#define HALLU_CHECKPOINT_VERSION "1"

/* Writes entries + meta (format/version/checksum are added). */
hallu_status hallu_checkpoint_write(const char *path, const hallu_st_entry *entries, int num_entries,
                                    const hallu_st_meta *meta, int num_meta, hallu_error *err);
/* Opens and verifies; close with hallu_safetensors_close. */
hallu_status hallu_checkpoint_open(hallu_safetensors *st, const char *path, hallu_error *err);

/* Checksum as written in the metadata (16 hex digits). */
void hallu_checkpoint_checksum(const hallu_st_entry *entries, int num_entries, char out[17]);

/* Creates the backbone named in a checkpoint's metadata ("arch", "stem") with
 * prefix "" in ps (which must be empty), allocates ps on be and loads "model.encoder.*".
 * The caller frees *net (hallu_resnet_free) and ps. */
hallu_status hallu_checkpoint_load_backbone(const char *path, hallu_backend *be, hallu_resnet_config *cfg,
                                            hallu_params *ps, hallu_resnet **net, hallu_error *err);

#ifdef __cplusplus
}
#endif
#endif
