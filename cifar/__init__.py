"""The 32x32 laboratory: data, nets and one trainer for the four CIFAR-scale notebooks.

Modules, each with one job:

* :mod:`cifar.cifar10`: CIFAR-10 from its official archive (checksum-verified download, cached).
* :mod:`cifar.shapes`: Simple Shapes at 32x32 (seeded generator, the paper's grey style and an RGB
  variant) and :func:`~cifar.shapes.count_shapes`, which reads each blob's geometry.
* :mod:`cifar.tokens`: token views of images for masked diffusion (:class:`~cifar.tokens.TokenView`).
* :mod:`cifar.token_temperature`: how hot token samples are against an exact Markov chain (rare-token
  and rare-transition shares, NLL per token, a fitted temperature).
* :mod:`cifar.data`: ``load_dataset(spec)`` over all of the above; pixel <-> model-space conversions.
* :mod:`cifar.unet`: a time- and class-conditioned U-Net (null class for classifier-free guidance).
* :mod:`cifar.transformer`: a bidirectional token transformer.
* :mod:`cifar.trainer`: ``train`` (AdamW, warm-up, clipping, EMA, bf16 or fp16 by GPU, compile
  fallback, atomic CRC-checked checkpoints with exact resume, DDP) and ``train_recipe`` (the same,
  cached by recipe, data and loss: a checkpoint only ever returns the run it fingerprints).
* :mod:`cifar.recipes`: a quick (CPU) and a full (GPU) recipe per lesson.
* :mod:`cifar.bench`: ``python -m cifar.bench`` prints training and sampling throughput.

Nothing here imports ``toy2d``, ``minimal`` or the lessons.
"""
