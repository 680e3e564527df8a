"""The ``keras-gemma`` command line: a thin click group, one module per verb.

Verb modules are imported only when their verb runs (or when ``--help``
lists them); none of them imports keras at module level, so ``--help`` is fast.
"""

from __future__ import annotations

import importlib

import click

from keras_gemma_app import __version__
from keras_gemma_app.errors import KerasGemmaError

# verb -> "module:function"; each module holds one verb.
VERBS = {
    "generate": "keras_gemma_app.cli.generate:generate",
    "chat": "keras_gemma_app.cli.chat:chat",
    "serve": "keras_gemma_app.cli.serve:serve",
    "show-prompt": "keras_gemma_app.cli.show_prompt:show_prompt",
    "list": "keras_gemma_app.cli.list_models:list_models",
    "show": "keras_gemma_app.cli.show:show",
    "recommend": "keras_gemma_app.cli.recommend:recommend",
    "pull": "keras_gemma_app.cli.pull:pull",
    "rm": "keras_gemma_app.cli.remove:remove",
    "cache": "keras_gemma_app.cli.cache:cache",
    "backends": "keras_gemma_app.cli.backends:backends",
    "bench": "keras_gemma_app.cli.bench:bench",
    "import": "keras_gemma_app.cli.import_model:import_group",
    "export": "keras_gemma_app.cli.export:export",
    "quantize": "keras_gemma_app.cli.quantize:quantize",
    "eval": "keras_gemma_app.cli.eval_model:eval_model",
}


class UserError(click.ClickException):
    """A problem the user can fix: printed as one line, exit status 2."""

    exit_code = 2


class AppGroup(click.Group):
    """Loads verbs lazily and renders the library's typed errors."""

    def list_commands(self, ctx):
        return list(VERBS)

    def get_command(self, ctx, name):
        target = VERBS.get(name)
        if target is None:
            return None
        module, attribute = target.split(":")
        return getattr(importlib.import_module(module), attribute)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KerasGemmaError as error:
            raise UserError(str(error)) from None


@click.group(cls=AppGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="keras-gemma")
def main():
    """Run Google's Gemma models with Keras on JAX, TensorFlow or PyTorch.

    \b
    Examples:
      keras-gemma recommend
      keras-gemma pull gemma3_instruct_1b
      keras-gemma generate "Why is the sky blue?"
      keras-gemma generate -m gemma3_instruct_1b --backend torch "Hello"
      keras-gemma import gguf model.gguf ./my_preset
      keras-gemma bench --baseline keras-hub
    """
