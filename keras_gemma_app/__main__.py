"""``python -m keras_gemma_app`` runs the ``keras-gemma`` command line."""

from keras_gemma_app.cli import main

if __name__ == "__main__":
    main(prog_name="keras-gemma")
