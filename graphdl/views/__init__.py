"""Views on a graph, beside the compiler: drawings (`circuit`, `viz`), narrations (`teach`,
`stepper`), gradient checks (`check`), closed forms (`symbolic`) and the command line (`cli`)."""
