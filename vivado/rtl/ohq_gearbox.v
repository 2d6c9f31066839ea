// ohq_gearbox: AXI4-Stream beats of BUS_BYTES bytes in, words of 8 or SIMD bytes out
// (chosen per word by `need_simd`), bytes taken little-end first. The input stream is a plain
// byte sequence: a word may straddle two beats. `en` gates tready (beats still expected);
// `clear` empties the buffer (start of a layer).
`default_nettype none
module ohq_gearbox #(
    parameter integer BUS_BYTES = 8,
    parameter integer SIMD = 8
) (
    input  wire                       clk,
    input  wire                       rst_n,
    input  wire                       clear,
    input  wire                       en,
    input  wire [BUS_BYTES*8-1:0]     s_tdata,
    input  wire                       s_tvalid,
    output wire                       s_tready,
    input  wire                       need_simd,   // 1: SIMD-byte word, 0: 8-byte word
    output wire [OUT_MAX*8-1:0]       word,
    output wire                       word_valid,
    input  wire                       word_ready
);
    localparam integer OUT_MAX = (SIMD > 8) ? SIMD : 8;
    localparam integer CAP = OUT_MAX + BUS_BYTES;          // bytes held at most
    localparam integer FW = $clog2(CAP + 1);
    localparam [FW-1:0] NBUS = BUS_BYTES[FW-1:0];
    localparam [FW-1:0] NCAP = CAP[FW-1:0];
    localparam [FW-1:0] NSIMD = SIMD[FW-1:0];

    reg  [CAP*8-1:0] buffer;
    reg  [FW-1:0]    fill;
    wire [FW-1:0]    need = need_simd ? NSIMD : 8;
    assign word_valid = (fill >= need);
    wire take = word_valid && word_ready;
    assign s_tready = en && ({1'b0, fill} + {1'b0, NBUS} <= {1'b0, NCAP});
    wire acc = s_tready && s_tvalid;
    wire [FW-1:0] fill_after = take ? fill - need : fill;
    wire [CAP*8-1:0] shifted = take ? (buffer >> (need * 8)) : buffer;
    wire [CAP*8-1:0] beat_ext = {{(CAP-BUS_BYTES)*8{1'b0}}, s_tdata};
    assign word = buffer[OUT_MAX*8-1:0];

    always @(posedge clk) begin
        if (!rst_n || clear) begin
            buffer <= {CAP*8{1'b0}};
            fill <= {FW{1'b0}};
        end else begin
            buffer <= acc ? (shifted | (beat_ext << (fill_after * 8))) : shifted;
            fill <= acc ? fill_after + NBUS : fill_after;
        end
    end
endmodule
`default_nettype wire
