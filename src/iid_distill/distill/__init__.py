"""DM, IDM and their IID variants (Deng et al., CVPR 2024): batched over classes, deterministic, resumable.

One iteration, for every method:

1. :func:`draw_iteration` draws ALL of the iteration's randomness first: the matching network (DM: the seed of a
   fresh random ConvNet; IDM: which queue networks, and the seed of the network appended this iteration), the real
   images of every class (batched sampling without replacement: random keys over a padded (C, max_count) index
   matrix + top-k), one DSA :class:`~iid_distill.augment.GroupPlan` per matching pass (one op and parameter set per
   class, shared by the class's real and synthetic images: siamese), the CC network from the pre-trained pool and
   (IDM) the queue networks to train with their real batches.
2. :func:`batched_loss_and_gradient` computes every class's loss and its gradient batched: the real images of all
   classes go through the matching network in chunks of ``real_chunk`` under ``no_grad`` (their DSA from the plan),
   the synthetic training images (IDM: partitioned and expanded first) with grad, all classes in one pass on GPU
   (in class groups of ``syn_chunk`` images, whose gradients add up exactly, where memory or CPU caches call for
   it). One forward gives the feature map (covariance matching, Eq. 5-7) and the embedding derived from it (mean
   matching, Eq. 2); the CC network g embeds the same augmented synthetic batch (Eq. 3), as the authors' per-class
   loop computes the constraint on the same ``img_syn`` it matches; IDM adds its class-aware cross-entropy on
   ``classifier(embedding)`` (the authors run ``net(img_syn)`` a second time: the same values).
   Total: ``L_mean + lambda_cc * L_CC + lambda_cm * L_CM (+ IDM's weighted CE)`` (paper Eq. 8 / 9).
3. :func:`image_step` updates the images with SGD + momentum. ``joint`` is one step on the summed loss (DM).
   ``per_class`` reproduces EXACTLY the published IDM loop, which takes one optimiser step per class inside the class
   loop: the class losses are independent given the frozen network, so each class's gradient is taken at the point
   its image slice has drifted to through the momentum of the earlier classes' sub-steps, all classes at once, and
   closed forms of the momentum sub-steps finish the iteration (derivation in :func:`per_class_coefficients`).
4. IDM: the chosen queue networks train on real batches and update their accuracy meters.

The literal per-class loop of the authors' code (per class: DSA, forward, loss, and for ``per_class`` a
``torch.optim.SGD`` step) is the test oracle in ``tests/distill_reference.py``, outside the package: the tests check
the batched path against it.

Randomness comes only from two explicit generators saved in every checkpoint: a CPU "host" generator for choices
made on the host (network seeds, queue and pool choices: no device synchronisation) and a generator on the device
for tensors (real-image keys, DSA plans, IDM training batches, the initialisation).
"""


from __future__ import annotations

from iid_distill.distill.settings import (  # noqa: F401
    CC_FORMS,
    CHECKPOINT_FORMAT,
    CHECKPOINT_VERSION,
    COMPILE_AUTO_REAL_IMAGES,
    CONSTRAINTS,
    CheckpointError,
    DistillConfig,
    DistillError,
    HOSTS,
    IMAGE_STEPS,
    INITS,
    INIT_DOWNSCALE_MODES,
    LOSS_TERMS,
    PRECISIONS,
    RESULT_NEUTRAL_FIELDS,
    SETTINGS_SOURCES,
    host_of,
    import_plugins,
    method_ids,
    method_id_of,
    structural_label,
    published_settings,
    register_host,
    resolve_distill_settings,
)
from iid_distill.distill.context import (  # noqa: F401
    DistillContext,
    RealSampler,
    default_chunks,
    expand_training_view,
    per_class_coefficients,
)
from iid_distill.distill.networks import (  # noqa: F401
    FeatureNetPool,
    FreshNetFactory,
    InMemoryPool,
    QueueMember,
    frozen,
    new_queue_member,
)
from iid_distill.distill.draws import (  # noqa: F401
    IterationDraw,
    MatchDraw,
    draw_iteration,
)
from iid_distill.distill.matching import (  # noqa: F401
    batched_loss_and_gradient,
    batched_loss_terms,
    class_groups,
    image_step,
    real_features,
)
from iid_distill.distill.iteration import (  # noqa: F401
    DistillState,
    distill_iteration,
    initial_images,
    initial_state,
    stream_seed,
)
from iid_distill.distill.hosts import (  # noqa: F401
    DataDAMHost,
    DMHost,
    Host,
    IDMHost,
    M3DHost,
    MatchFeatures,
    train_queue_nets,
)
from iid_distill.distill.checkpoint import (  # noqa: F401
    checkpoint_path,
    read_checkpoint,
    restore_state,
    resume_state,
    save_checkpoint,
)
from iid_distill.distill.run import (  # noqa: F401
    current_synthetic_set,
    output_paths,
    run_distillation,
    run_method_id,
    synthetic_params,
)

__all__ = [
    "CHECKPOINT_FORMAT",
    "CheckpointError",
    "DistillConfig",
    "DistillContext",
    "DistillError",
    "DistillState",
    "HOSTS",
    "Host",
    "MatchFeatures",
    "InMemoryPool",
    "IterationDraw",
    "MatchDraw",
    "RealSampler",
    "batched_loss_and_gradient",
    "batched_loss_terms",
    "class_groups",
    "default_chunks",
    "checkpoint_path",
    "distill_iteration",
    "draw_iteration",
    "image_step",
    "import_plugins",
    "method_ids",
    "initial_state",
    "structural_label",
    "per_class_coefficients",
    "published_settings",
    "resolve_distill_settings",
    "register_host",
    "run_distillation",
]
