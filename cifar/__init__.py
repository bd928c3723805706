"""The 32x32 laboratory: data, nets and one trainer for the four CIFAR-scale notebooks.

Modules, each with one job:

* :mod:`cifar.cifar10`: CIFAR-10 from its official archive (checksum-verified download, cached).
* :mod:`cifar.shapes`: Simple Shapes at 32x32 (seeded generator, the paper's grey style and an RGB
  variant) and :func:`~cifar.shapes.count_shapes`, which reads each blob's geometry.
* :mod:`cifar.tokens`: token views of images for masked diffusion (:class:`~cifar.tokens.TokenView`).
* :mod:`cifar.empirical_mixture`: the exact denoiser, score and eps of a training set (a mixture of one
  narrow Gaussian per image; chunked, class-conditional for guidance): a perfect model at 32x32.
* :mod:`cifar.token_oracle`: an exact masked model at L = 1024 (a Markov chain over image tokens).
* :mod:`cifar.token_temperature`: how hot token samples are against an exact Markov chain (rare-token
  and rare-transition shares, NLL per token, a fitted temperature).
* :mod:`cifar.data`: ``load_dataset(spec)`` over all of the above; pixel <-> model-space conversions.
* :mod:`cifar.unet`: a time- and class-conditioned U-Net (null class for classifier-free guidance).
* :mod:`cifar.transformer`: a bidirectional token transformer.
* :mod:`cifar.trainer`: ``train`` (AdamW, warm-up, clipping, EMA, bf16 or fp16 by GPU, compile
  fallback, atomic CRC-checked checkpoints with exact resume, DDP) and ``train_recipe`` (the same,
  cached by recipe, data and loss: a checkpoint only ever returns the run it fingerprints).
* :mod:`cifar.recipes`: a quick (CI) recipe per lesson and a full one, GPU-sized on CUDA and
  CPU-sized elsewhere where the lesson has one (``recipe["run"]`` says which).
* :mod:`cifar.shapes_ddpm`: the grey Simple Shapes DDPM that lessons 01 and 02 share (one loss, one
  cached run).
* :mod:`cifar.momentum_sweep`: the magnitude score and one sweep over samplers x steps x guidance.
* :mod:`cifar.timing`: a timed ``probs_fn`` and sampler timing for the FHS-vs-MDLM speed study.
* :mod:`cifar.bench`: ``python -m cifar.bench`` prints training and sampling throughput.

Nothing here imports ``toy2d``, ``minimal`` or the lessons.
"""
