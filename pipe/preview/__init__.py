"""Preview deployments: a pull request's flows deployed under names of their own, and cleaned up after.

``ACTION=preview`` (pull-request builds) deploys the selected deployments of the prefect.yaml as
``<deployment>-pr-<id>`` (``PREVIEW_NAME``), pinned to the commit, with no schedules and no triggers,
tagged ``preview``/``pr:<id>``/``branch:<source>`` and labelled with the repository and the pull
request; a new commit updates the same previews in place. ``ACTION=cleanup-previews`` finds this
repository's previews (tag, label and name, all three) and deletes those whose pull request is no
longer open, or that were not updated for ``PREVIEW_TTL_DAYS``.

One module per concern: :mod:`~pipe.preview.settings` (the variables, checked at load),
:mod:`~pipe.preview.naming` (the name template), :mod:`~pipe.preview.marks` (the tags and labels that
make a deployment a preview of this repository's pull request), :mod:`~pipe.preview.document` (the
preview entries of the prefect.yaml copy), :mod:`~pipe.preview.guard` (before deploying: names that
belong to someone else), :mod:`~pipe.preview.publish` (after: the labels),
:mod:`~pipe.preview.deployments` (what previews ask of the Prefect API) and :mod:`~pipe.preview.cleanup`.

This package's ``__init__`` and ``settings``/``naming`` stay import-cheap: the configuration loads them.
"""
