"""The Recipe dock widget: the steps applied to a layer, saved as a recipe, replayed.

Every post-processing widget adds a new layer whose HISTORY (in the layer's metadata)
lists the steps applied so far with their parameters and masks. This widget reads
them back (:func:`napari_astro.pipeline.recipes.recipe_from_history`), shows them,
saves them as TOML, loads a recipe file (or the built-in default), and replays it on
another layer in a worker thread, adding one layer per step (delete a layer to undo
it). A recipe saved here and run with ``napari-astro process --recipe`` gives the same
pixels.
"""

from __future__ import annotations

from typing import Any, Callable

from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QLabel, QListWidget, QPushButton

from ._base import StepWidget

__all__ = ["RecipeWidget"]


class RecipeWidget(StepWidget):
    """Record, save, load and replay chains of processing steps."""

    title = "Recipe"
    run_text = "Replay on image"

    def build(self) -> None:
        self.source_picker = self.add_picker("steps of")
        self.source_picker.widget.changed.connect(self._from_layer)
        self._layout.addWidget(QLabel("<b>Steps</b> (replayed in this order)"))
        self.list = QListWidget()
        self.list.setMinimumHeight(140)
        self._layout.addWidget(self.list)
        row = QHBoxLayout()
        for text, slot in (("From layer", self._from_layer), ("Default", self.load_default),
                           ("Load…", self._load_dialog), ("Save…", self._save_dialog)):
            b = QPushButton(text)
            b.clicked.connect(slot)
            row.addWidget(b)
        self._layout.addLayout(row)
        self.target_picker = self.add_picker("replay on")
        self.per_step_layers = True
        self.entries: list = []

    # -- the recipe ----------------------------------------------------------------
    def set_entries(self, entries: list) -> None:
        self.entries = list(entries)
        self.list.clear()
        for i, e in enumerate(self.entries, 1):
            changed = e.params.changed()
            extra = ", ".join(f"{k}={v}" for k, v in changed.items())
            mask = f"  [mask: {e.mask}]" if e.mask else ""
            self.list.addItem(f"{i}. {e.params.TITLE or e.step_id}"
                              f"{' (' + extra + ')' if extra else ''}{mask}")

    def _from_layer(self, *_: Any) -> None:
        from ..pipeline.recipes import recipe_from_history
        from ._layers import layer_to_image

        layer = self.source_picker.value
        if layer is None:
            return
        try:
            history = layer_to_image(layer).history
        except ValueError:
            return
        self.set_entries(recipe_from_history(history))
        self.set_status(f"{len(self.entries)} steps read from {layer.name!r}")

    def load_default(self) -> None:
        from ..pipeline.recipes import default_recipe

        self.set_entries(default_recipe())
        self.set_status("the default nine-step recipe")

    def load(self, path: str) -> None:
        from ..core.errors import BadInputError
        from ..pipeline.recipes import load_recipe

        try:
            self.set_entries(load_recipe(path))
        except BadInputError as exc:
            self.set_status(str(exc), error=True)
            return
        self.set_status(f"loaded {path}")

    def save(self, path: str) -> None:
        from ..pipeline.recipes import save_recipe

        save_recipe(self.entries, path)
        self.set_status(f"saved {len(self.entries)} steps to {path}")

    def _load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load a recipe", "", "Recipes (*.toml)")
        if path:
            self.load(path)

    def _save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save the recipe", "recipe.toml",
                                              "Recipes (*.toml)")
        if path:
            self.save(path)

    # -- replay ----------------------------------------------------------------------
    def prepare(self) -> Callable[..., Any]:
        from ..core.errors import BadInputError
        from ..pipeline.recipes import run_recipe
        from ._layers import layer_to_image

        layer = self.target_picker.value
        if layer is None:
            raise BadInputError(None, "pick the image to replay the recipe on")
        if not self.entries:
            raise BadInputError(None, "the recipe has no steps (read them from a layer, "
                                      "load a file or take the default)")
        image = layer_to_image(layer)
        coverage = (layer.metadata or {}).get("coverage")
        entries = list(self.entries)
        self._target_name = layer.name
        steps: list = []

        def inputs(entry: Any, current: Any) -> dict:
            if coverage is not None and getattr(coverage, "shape", None) == current.shape2d:
                return {"coverage": coverage}
            return {}

        def job(*, progress: Any = None, cancel: Any = None) -> Any:
            result = run_recipe(image, entries, progress=progress, cancel=cancel, inputs=inputs,
                                on_step=lambda i, e, r: steps.append((i, e, r.image)))
            return result, steps

        return job

    def show_result(self, result: Any) -> None:
        from ._base import add_layers
        from ._layers import image_to_layer_data

        final, steps = result
        data = []
        if self.per_step_layers:
            for i, entry, img in steps[:-1]:
                data.append(image_to_layer_data(
                    img, f"{self._target_name} [{i + 1}. {entry.step_id}]", visible=False))
        data.append(image_to_layer_data(final.image, f"{self._target_name} [recipe]"))
        add_layers(self.viewer, data)
        if final.messages:
            self.set_status("; ".join(final.messages))
