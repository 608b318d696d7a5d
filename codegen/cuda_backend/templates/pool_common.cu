// ${name}: ${what}
// One thread per ${item} (a grid-stride loop over ${total}).
namespace ${name}_ns {
typedef ${xt} X;  // the pooled input's type
typedef ${vt} V;  // the type of the values written
// x (N, C, H, W) pooled to (N, C, OH, OW), N*C planes: windows of KH x KW taps at stride
// (SH, SW), the padding's top and left PT, PL
constexpr int H = ${h}, W = ${w}, OH = ${oh}, OW = ${ow}, KH = ${kh}, KW = ${kw};
constexpr int SH = ${sh}, SW = ${sw}, PT = ${pt}, PL = ${pl}, TOTAL = ${total};
${helpers}
}  // namespace ${name}_ns
