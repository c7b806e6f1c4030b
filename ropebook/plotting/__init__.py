"""Figures for the book: pure functions that take numbers and return a matplotlib Figure.

Each function draws on a fresh figure with an opaque white face colour (readable
in the site's dark mode too) and never calls ``plt.show``. Widgets in
``ropebook.widgets`` wrap these same functions. One submodule per chapter topic.
"""

from ropebook.plotting._style import new_figure
from ropebook.plotting.attention import plot_attention_times, plot_copy_results, plot_offset_scores, plot_weight_rows
from ropebook.plotting.rope import rotation_2d, wavelengths
from ropebook.plotting.precision import angle_errors
from ropebook.plotting.crope import comparison_figure, offset_task_figure, summarize_comparison
from ropebook.plotting.decay import decay_curves, min_base_curve, pair_cosines, random_score_band  # ch-long-term-decay
from ropebook.plotting.positions import alibi_figure, shaw_figure, sinusoidal_figure, t5_bucket_figure  # ch-why-position
from ropebook.plotting.complex import complex_product  # ch-complex-rotations
from ropebook.plotting.gpu import latency_bandwidth_fit, rope_time_model  # ch-rope-gpu

__all__ = ["new_figure", "rotation_2d", "wavelengths"]
__all__ += ["angle_errors"]  # ch-rope-d-dims
__all__ += ["plot_attention_times", "plot_weight_rows", "plot_offset_scores", "plot_copy_results"]  # ch-linear-attention
__all__ += ["offset_task_figure", "comparison_figure", "summarize_comparison"]  # ch-crope
__all__ += ["decay_curves", "random_score_band", "pair_cosines", "min_base_curve"]  # ch-long-term-decay
__all__ += ["sinusoidal_figure", "shaw_figure", "t5_bucket_figure", "alibi_figure"]  # ch-why-position
__all__ += ["complex_product"]  # ch-complex-rotations
__all__ += ["latency_bandwidth_fit", "rope_time_model"]  # ch-rope-gpu
