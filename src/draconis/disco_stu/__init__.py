"""``disco``: distortion-corrected stacks of GSAOI frames, as the disco_stu package makes them.

The GSAOI tutorial stacks its ``_skyCorrected`` frames with disco_stu's
``disco`` command or its Python API; draconis provides both:

- ``draconis disco FILES... [-o OUT] [--refcat FILE]`` (:mod:`draconis.commands.disco`);
- ``draconis.disco(files, ...)``, and the tutorial's script with ``disco_stu``
  replaced by ``draconis.disco_stu``::

      from draconis.disco_stu import disco
      from draconis.disco_stu.lookups import general_parameters as disco_pars
      disco.disco(infiles=files, output_identifier="my_Kshort_stack", ...)

The work is the GSAOI alignAndStack sequence (reference catalogue, static
distortion, alignment of the four arrays' merged catalogues, one
distortion-corrected grid, stack) run by the Reduce runner, out-of-core.
"""
