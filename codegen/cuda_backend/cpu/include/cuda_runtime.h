// Empty on purpose: cuda_cpu.h, included before the kernel source, defines what this
// header would declare.
#pragma once
