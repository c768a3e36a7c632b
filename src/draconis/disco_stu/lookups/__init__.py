"""disco's default parameters (:mod:`draconis.disco_stu.lookups.general_parameters`)."""
