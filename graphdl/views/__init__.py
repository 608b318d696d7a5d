"""Views on a graph, beside the compiler: drawings (`viz`, over the `circuit` model with its
`labels`, `composites`, `lookups` and `numbers`), narrations (`teach`: `steps` built with
`teach_lookups` and `teach_printers`, written out by `teach_render` and `stepper`), gradient
checks (`check`), closed forms (`symbolic`), gradient descent drawn (`descent`, with
`descent_render`) and the command line (`cli`)."""
