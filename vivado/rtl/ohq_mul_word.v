// ohq_mul_word: the CH products x[e] * w[e] of one lane's word, combinational (PW = 2*BITS+1
// bits each, signed). x elements are BITS wide, signed if x_signed (else unsigned); w elements
// are signed. LUT_MULS: 0 one `*` per product (DSP48), 1 shift-add in LUTs, 2 (BITS == 4) two
// products per multiplier: with A = w1*2^10 + w0 and B = x1*2^10 + x0 (sign-extended fields),
// A*B = p0 + (x0*w1 + x1*w0)*2^10 + p2*2^20 with p0 = x0*w0, p2 = x1*w1, |p| <= 120 and the
// middle term <= 240 in magnitude for any 4-bit codes, so each field is read back exactly by
// undoing the borrow of the signed field below it (15 x 15 bits: one DSP48E1/E2).
`default_nettype none
module ohq_mul_word #(
    parameter integer BITS = 8,
    parameter integer CH = 8,
    parameter integer LUT_MULS = 0
) (
    input  wire [CH*BITS-1:0]       x,
    input  wire [CH*BITS-1:0]       w,
    input  wire                     x_signed,
    output wire [CH*(2*BITS+1)-1:0] p
);
    localparam integer PW = 2 * BITS + 1;
    genvar e, pq;
    generate
        if (LUT_MULS == 2 && BITS == 4) begin : dsp2
            for (pq = 0; pq < CH / 2; pq = pq + 1) begin : pair
                wire [3:0] x0 = x[(2*pq)*4 +: 4], x1 = x[(2*pq+1)*4 +: 4];
                wire [3:0] wq0 = w[(2*pq)*4 +: 4], wq1 = w[(2*pq+1)*4 +: 4];
                wire x0s = x_signed & x0[3], x1s = x_signed & x1[3];
                wire signed [14:0] bpk = $signed({x1s, x1, 10'd0}) + $signed({{10{x0s}}, x0s, x0});
                wire signed [14:0] apk = $signed({wq1[3], wq1, 10'd0}) + $signed({{11{wq0[3]}}, wq0});
                wire signed [29:0] ppk = apk * bpk;
                wire [19:0] r1 = ppk[29:10] + {19'd0, ppk[9]};   // (P - p0) / 2^10
                wire [9:0] r2 = r1[19:10] + {9'd0, r1[9]};       // (r1 - middle) / 2^10
                assign p[(2*pq)*PW +: PW] = ppk[PW-1:0];
                assign p[(2*pq+1)*PW +: PW] = r2[PW-1:0];
                wire _unused_ok = &{1'b0, r1[8:0], r2[9], 1'b0};
            end
            if (CH % 2 != 0) begin : odd     // not used by the core (CH is a power of two)
                wire signed [4:0] xs = {x_signed & x[CH*4-1], x[(CH-1)*4 +: 4]};
                wire signed [3:0] ws = w[(CH-1)*4 +: 4];
                wire signed [8:0] po = xs * ws;
                assign p[(CH-1)*PW +: PW] = po;
            end
        end else begin : single
            for (e = 0; e < CH; e = e + 1) begin : mul
                wire [BITS-1:0] xa = x[e*BITS +: BITS];
                wire [BITS-1:0] wb = w[e*BITS +: BITS];
                wire signed [BITS:0] xs = {x_signed & xa[BITS-1], xa};
                wire signed [PW-1:0] pr;
                if (LUT_MULS != 0) begin : lut
                    // x * w = sum_{i < BITS-1} w[i] (x << i) - w[BITS-1] (x << (BITS-1)):
                    // adders only, so synthesis keeps these small products out of the DSPs.
                    wire signed [PW-1:0] xe = {{(PW-BITS-1){xs[BITS]}}, xs};
                    reg signed [PW-1:0] sa;
                    integer j;
                    always @* begin
                        sa = {PW{1'b0}};
                        for (j = 0; j < BITS - 1; j = j + 1)
                            if (wb[j]) sa = sa + (xe <<< j);
                        if (wb[BITS-1]) sa = sa - (xe <<< (BITS - 1));
                    end
                    assign pr = sa;
                end else begin : dsp
                    wire signed [BITS-1:0] wsg = wb;
                    assign pr = xs * wsg;
                end
                assign p[e*PW +: PW] = pr;
            end
        end
    endgenerate
endmodule
`default_nettype wire
