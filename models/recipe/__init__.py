"""The training recipe, one module per stage in recipe order over one training loop:

    loop.py         the loop every stage runs in (AdamW, EMA, LR schedule, logs, checkpoints, exact resume, torchrun)
    clips.py        the recorded clips and prompts the clip stages train on
    autoencoder.py  (latent-space models only) frames <-> latents
    teacher.py      the bidirectional teacher
    ode.py          the student's ODE initialisation from the teacher's trajectories
    dmd.py          distribution matching on the student's own rollouts (generator and critic steps)
    gen.py          generation without structure (text/image-to-video, extension)
    regression.py   beside the recipe: backbone v2 trained by a pixel loss alone, the baseline of `restyler eval`
    export.py       a finished run -> a shipped fp16 model directory
    run.py          `restyler train STAGE`: builds a stage and runs it

Imports models.io, models.network and models.evaluation (the temporal term shares warp_ratio's warp).
"""
