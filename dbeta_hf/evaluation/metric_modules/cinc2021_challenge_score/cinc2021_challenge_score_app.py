"""The widget of the cinc2021_challenge_score metric Space (what `evaluate-cli create` generates, loading the script next to it)."""

import os

import evaluate
from evaluate.utils import launch_gradio_widget

module = evaluate.load(os.path.join(os.path.dirname(os.path.abspath(__file__)), "cinc2021_challenge_score.py"))
launch_gradio_widget(module)
