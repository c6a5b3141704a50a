"""A user's pipeline under claimbench: a small diffusers DDPM pipeline with random weights.

``setup`` runs once per worker process and is not timed; ``call`` is one measured sample.
Everything in ``[params]`` except ``entry`` arrives in ``params``, typed as written.
"""

import torch
from diffusers import DDPMPipeline, DDPMScheduler, UNet2DModel


class TinyDdpm:
    def setup(self, params, ctx):
        unet = UNet2DModel(
            sample_size=params["resolution"],
            block_out_channels=(32, 64),
            down_block_types=("DownBlock2D", "AttnDownBlock2D"),
            up_block_types=("AttnUpBlock2D", "UpBlock2D"),
            layers_per_block=1,
            norm_num_groups=8,
        )
        unet.register_forward_hook(lambda *_: ctx.count("unet_evals"))
        self.pipe = DDPMPipeline(unet=unet, scheduler=DDPMScheduler()).to(ctx.device, ctx.dtype)
        self.pipe.set_progress_bar_config(disable=True)
        self.steps, self.batch = params["steps"], params.get("batch", 1)

    def call(self, ctx):
        with ctx.stage("denoise"):
            generator = torch.Generator().manual_seed(0)
            self.pipe(batch_size=self.batch, num_inference_steps=self.steps,
                      generator=generator, output_type="np")
