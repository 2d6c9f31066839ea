// ohq_conv_engine: one quantized conv layer per start, streams in and out.
//
// Input stream (bytes, little-end first): 8-byte param records, PE * WPL weight words,
// H * W * CPP activation words (SIMD bytes each), zero padding to a whole beat. The writer side
// stores params/weights in per-lane memories and activation words in a circular line buffer of
// LB_ROWS * MAX_ROW_WORDS words (2*PE banks, any row width); the compute side walks output
// pixels and issues one MAC step (PE lanes x CH elements) per cycle.
//   dense / grouped: order (oy, ox, group, tile, ky, kx, chunk); every lane reads the same word.
//   depthwise (groups == cin == cout, PE <= CH): order (oy, ox-group, tile, ky, kx); lane i reads
//     its own word (J = PE / cpp output pixels x cpp chunks, or PE chunks when cpp >= PE) and
//     accumulates its CH products element-wise.
// Arithmetic is described in vivado/README.md and implemented bit-for-bit by
// ohq_pynq/hw/core_model.py; ohq_pynq/hw/cycle_model.py reproduces the cycle counter.
`default_nettype none
module ohq_conv_engine #(
    parameter integer BITS = 8,            // 4 or 8
    parameter integer PE = 8,              // output-channel lanes (power of two)
    parameter integer SIMD = 8,            // input bytes per MAC step (power of two)
    parameter integer BUS_BYTES = 8,       // AXI4-Stream width (power of two, >= 8)
    parameter integer LB_ROWS = 8,         // line buffer: LB_ROWS * MAX_ROW_WORDS words (power of two)
    parameter integer MAX_ROW_WORDS = 1024,// power of two
    parameter integer MAX_WDEPTH = 1024,
    parameter integer MAX_TILES = 256,
    parameter integer LUT_MULS = (BITS == 4) ? 1 : 0  // MAC multipliers (ohq_mul_word): 0 DSP48,
                                                      // 1 LUT shift-add, 2 (int4) two per DSP48
) (
    input  wire                   clk,
    input  wire                   rst_n,
    input  wire                   start,
    output reg                    busy,
    output reg                    done_pulse,
    output reg                    ready_pulse,
    input  wire [15:0]            cfg_cin,
    input  wire [15:0]            cfg_cout,
    input  wire [15:0]            cfg_h,
    input  wire [15:0]            cfg_w,
    input  wire [3:0]             cfg_k,
    input  wire [1:0]             cfg_stride,
    input  wire [3:0]             cfg_pad_t,
    input  wire [3:0]             cfg_pad_l,
    input  wire [3:0]             cfg_pad_b,
    input  wire [3:0]             cfg_pad_r,
    input  wire [15:0]            cfg_groups,
    input  wire                   cfg_in_signed,
    input  wire [3:0]             cfg_out_bits,
    input  wire                   cfg_out_signed,
    input  wire                   cfg_relu,
    output reg  [31:0]            in_beats,
    output wire                   stat_in_stall,
    output wire                   stat_out_stall,
    output wire                   stat_mac,
    input  wire [BUS_BYTES*8-1:0] s_tdata,
    input  wire                   s_tvalid,
    output wire                   s_tready,
    output wire [BUS_BYTES*8-1:0] m_tdata,
    output wire                   m_tvalid,
    input  wire                   m_tready,
    output wire                   m_tlast
);
    localparam integer PACK = 8 / BITS;               // elements per byte lane
    localparam integer CH = SIMD * PACK;              // input channels per word
    localparam integer LOG_CH = $clog2(CH);
    localparam integer LOG_PE = $clog2(PE);
    localparam integer LOG_SIMD = $clog2(SIMD);
    localparam integer LOG_BUS = $clog2(BUS_BYTES);
    localparam integer CAP = LB_ROWS * MAX_ROW_WORDS; // line-buffer words
    localparam integer LOG_CAP = $clog2(CAP);
    localparam integer NB = 2 * PE;                   // line-buffer banks
    localparam integer LOG_NB = LOG_PE + 1;
    localparam integer LOG_BD = LOG_CAP - LOG_NB;     // bank address bits
    localparam integer WA = $clog2(MAX_WDEPTH);
    localparam integer TA = $clog2(MAX_TILES);
    localparam integer OUT_MAX = (SIMD > 8) ? SIMD : 8;
    localparam integer PW = 2 * BITS + 1;             // product width
    localparam integer SW = PW + LOG_CH + 1;          // per-lane word sum width
    localparam integer AWD = PW + 6;                  // depthwise accumulator (<= 49 products)
    // Depthwise mode needs a PE tile inside one word's lanes; RQ requantizers take RQ outputs
    // per cycle, so a depthwise group (PE x CH outputs) unloads in U = PE*CH/RQ cycles.
    localparam integer DW_OK = (PE <= CH) ? 1 : 0;
    localparam integer RQ0 = (PE * CH) / 8;
    localparam integer RQ = (DW_OK == 0) ? PE : ((RQ0 < PE) ? PE : ((RQ0 > CH) ? CH : RQ0));
    localparam integer WPL = (DW_OK != 0) ? CH / RQ : 1;   // unload words per lane (depthwise)
    localparam integer LOG_WPL = $clog2(WPL);
    localparam integer U = (DW_OK != 0) ? PE * WPL : 1;   // unload words per depthwise group
    localparam integer LOG_U = LOG_PE + LOG_WPL + 1;
    localparam integer NVW = $clog2(RQ + 1);
    localparam integer LOG_RQ = $clog2(RQ);
    localparam integer GS = (CH < 4) ? CH : 4;        // adder tree: first stage sums GS products
    localparam integer NG = CH / GS;
    localparam [LOG_PE:0] PE_L = PE[LOG_PE:0];
    localparam [LOG_CAP-1:0] PE_C = PE[LOG_CAP-1:0];
    localparam [31:0] RQ32 = RQ;
    localparam [31:0] WMASK32 = WPL - 1;
    localparam [LOG_U-1:0] U_WMASK = WMASK32[LOG_U-1:0];
    localparam [31:0] CHM1_32 = CH - 1;               // round up to words / tiles
    localparam [31:0] PEM1_32 = PE - 1;
    localparam [15:0] CHM1 = CHM1_32[15:0];
    localparam [15:0] PEM1 = PEM1_32[15:0];

    // ------------------------------------------------------------------ configuration, setup
    reg [15:0] c_cin, c_cout, c_h, c_w, c_groups;
    reg [3:0]  c_k, c_pt, c_pl, c_pb, c_pr;
    reg        c_s2, c_in_signed, c_ob8, c_out_signed, c_relu;
    reg [15:0] cout_g, chunks_g, tiles_g, cpp, ntiles, kk, kkc, oh, ow, last_nvalid;
    reg [15:0] ngroups;        // groups walked by the compute loop (1 in depthwise mode)
    reg        dw;             // depthwise mode
    reg        ws;             // weight streaming: activations first, tiles outer, weights overlap
    reg [15:0] rpt;            // weight rows per tile (K*K*chunks_g; depthwise K*K)
    reg [31:0] wwords;         // weight words in the stream (valid lanes only)
    wire dw_c = (DW_OK != 0) && (c_groups > 1) && (div_qa == 1) && (div_qb == 1);
    reg [31:0] row_words, wpl, act_words, n_rec, in_bytes, n_prow;
    reg [LOG_CAP-1:0] xbase0, ybase0_init;
    reg [31:0] low_lin0;

    localparam [3:0] ST_IDLE = 0, ST_DIV = 1, ST_D1 = 2, ST_D2 = 3, ST_D3 = 4, ST_D4 = 5,
                     ST_D5 = 6, ST_D6 = 7, ST_RUN = 8;
    reg [3:0]  st;
    reg [4:0]  div_i;
    reg [15:0] div_na, div_nb, div_qa, div_qb;
    reg [15:0] div_ra, div_rb;
    wire [16:0] div_ra_s = {div_ra, div_na[15]};
    wire [16:0] div_rb_s = {div_rb, div_nb[15]};
    wire [16:0] div_d = {1'b0, c_groups};
    wire [16:0] oh_num = {1'b0, c_h} + {13'd0, c_pt} + {13'd0, c_pb} - {13'd0, c_k};
    wire [16:0] ow_num = {1'b0, c_w} + {13'd0, c_pl} + {13'd0, c_pr} - {13'd0, c_k};
    wire [16:0] oh_n = (c_s2 ? (oh_num >> 1) : oh_num) + 17'd1;
    wire [16:0] ow_n = (c_s2 ? (ow_num >> 1) : ow_num) + 17'd1;
    wire [31:0] xbase0_n = 32'd0 - {16'd0, c_pl} * {16'd0, cpp};       // -pad_l * cpp (mod CAP)
    wire [31:0] ybase0_n = 32'd0 - {28'd0, c_pt} * row_words;          // -pad_t * row_words

    // ------------------------------------------------------------------ lane table (depthwise)
    // Lane i of a depthwise step reads word B + off[i] (B: the step's base word) for output pixel
    // ox + jx[i]/stride; computed in PE cycles at the start of a run, long before the first issue.
    reg [LOG_NB-1:0] l_off [0:PE-1];
    reg [LOG_PE:0]   l_jx [0:PE-1];    // j * stride (pixel offset of the lane's input column)
    reg [LOG_PE:0]   l_j  [0:PE-1];    // j (output pixel within the group)
    reg [LOG_PE-1:0] l_chunk [0:PE-1]; // chunk within the group's pixel (J > 1) or tile (J == 1)
    reg [PE-1:0]     l_used;
    reg [LOG_PE:0]   lt_i, lt_jj, lt_jcnt;
    reg [15:0]       lt_cc;
    reg [LOG_NB:0]   lt_joff;
    reg              lt_busy;
    reg [15:0]       grp_j;            // output pixels per step (J), 1 outside depthwise mode
    reg              j1;               // depthwise with J == 1: lanes over chunks, tiles over cpp
    reg [31:0]       xstep;            // words per group step along a row (J * stride * cpp)
    reg [17:0]       ixstep;           // input columns per group step (J * stride)

    // ------------------------------------------------------------------ writer (input side)
    localparam [1:0] WP_PARAM = 0, WP_WEIGHT = 1, WP_ACT = 2, WP_DRAIN = 3;
    reg  [1:0]  wph;
    reg  [31:0] beats_in;
    reg  [LOG_RQ:0] wr_lane;
    reg  [31:0] wr_addr;       // param row / weight row address (rows completed)
    reg  [15:0] wt_r, wt_t;    // weight row within its tile, tile within its group
    reg  [15:0] wr_row;        // activation row being written
    reg  [31:0] wr_k;          // word within the row
    reg  [31:0] wr_lin;        // activation words written
    reg  [LOG_CAP-1:0] wr_ptr; // line-buffer write pointer
    reg  [16:0] rows_written;
    reg  signed [33:0] low_lin;   // first word of the oldest input row the compute side still reads
    reg  free_all;             // compute finished issuing: the writer may overwrite anything
    wire [OUT_MAX*8-1:0] gb_word;
    wire gb_valid;
    wire in_en = (st == ST_RUN) && (beats_in < in_beats);
    localparam signed [33:0] CAP34 = {2'b00, CAP[31:0]};
    wire row_ok = free_all || ws || ($signed({2'b00, wr_lin}) < low_lin + CAP34);
    wire gb_ready = (wph != WP_ACT) || row_ok;
    wire gb_take = (st == ST_RUN) && gb_valid && gb_ready;
    wire in_hs = s_tvalid && s_tready;
    assign stat_in_stall = s_tready && !s_tvalid;
    localparam [LOG_RQ:0] RQ_N = RQ[LOG_RQ:0];
    localparam [LOG_RQ:0] PE_N = PE[LOG_RQ:0];
    localparam [15:0] PE16 = PE[15:0];
    wire [LOG_RQ:0] npr = dw ? RQ_N : PE_N;   // param records per row
    // Weight words per row: the tile's valid lanes (dense: cout lanes; depthwise: one word per
    // distinct pixel word, written to every lane that reads it).
    wire wt_last_t = (wt_t == tiles_g - 1);
    wire [15:0] wl_rows = dw ? (j1 ? (wt_last_t ? cpp - ((tiles_g - 16'd1) << LOG_PE) : PE16) : cpp)
                             : (wt_last_t ? last_nvalid : PE16);

    ohq_gearbox #(.BUS_BYTES(BUS_BYTES), .SIMD(SIMD)) u_gearbox (
        .clk(clk), .rst_n(rst_n), .clear(st != ST_RUN), .en(in_en),
        .s_tdata(s_tdata), .s_tvalid(s_tvalid), .s_tready(s_tready),
        .need_simd(wph != WP_PARAM), .word(gb_word), .word_valid(gb_valid),
        .word_ready(gb_ready && st == ST_RUN));

    wire lb_we = gb_take && (wph == WP_ACT);

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            wph <= WP_PARAM;
            beats_in <= 0;
            wr_lane <= 0;
            wr_addr <= 0;
            wt_r <= 0; wt_t <= 0;
            wr_row <= 0;
            wr_k <= 0;
            wr_lin <= 0;
            wr_ptr <= 0;
            rows_written <= 0;
        end else begin
            if (in_hs) beats_in <= beats_in + 1;
            if (gb_take) begin
                case (wph)
                    WP_PARAM: begin
                        if (wr_lane == npr - 1) begin
                            wr_lane <= 0;
                            if (wr_addr == n_prow - 1) begin
                                wr_addr <= 0;
                                wph <= ws ? WP_ACT : WP_WEIGHT;
                            end else
                                wr_addr <= wr_addr + 1;
                        end else
                            wr_lane <= wr_lane + 1;
                    end
                    WP_WEIGHT: begin
                        if ({{(15-LOG_RQ){1'b0}}, wr_lane} == wl_rows - 16'd1) begin
                            wr_lane <= 0;
                            wr_addr <= wr_addr + 1;
                            if (wt_r == rpt - 1) begin
                                wt_r <= 0;
                                wt_t <= wt_last_t ? 16'd0 : wt_t + 1;
                            end else
                                wt_r <= wt_r + 1;
                            if (wr_addr == wpl - 1) wph <= ws ? WP_DRAIN : WP_ACT;
                        end else
                            wr_lane <= wr_lane + 1;
                    end
                    WP_ACT: begin
                        wr_lin <= wr_lin + 1;
                        wr_ptr <= wr_ptr + 1'b1;
                        if (wr_k == row_words - 1) begin
                            wr_k <= 0;
                            wr_row <= wr_row + 1;
                            rows_written <= rows_written + 1;
                            if (wr_row == c_h - 1) wph <= ws ? WP_WEIGHT : WP_DRAIN;
                        end else
                            wr_k <= wr_k + 1;
                    end
                    default: ;
                endcase
            end
        end
    end

    // Lane table: (jj, cc) walk the lanes in order; a pixel group is used when it fits in PE.
    wire [31:0] jfit = ({{(31-LOG_PE){1'b0}}, lt_jj} + 32'd1) * {16'd0, cpp};   // (jj + 1) * cpp
    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            lt_busy <= (st == ST_D6);
            lt_i <= 0; lt_jj <= 0; lt_cc <= 0; lt_joff <= 0; lt_jcnt <= 0;
            if (st == ST_D6) l_used <= 0;
        end else if (lt_busy) begin
            if (!dw || cpp >= PE16) begin
                l_off[lt_i[LOG_PE-1:0]] <= dw ? lt_i[LOG_NB-1:0] : {LOG_NB{1'b0}};
                l_jx[lt_i[LOG_PE-1:0]] <= 0;
                l_j[lt_i[LOG_PE-1:0]] <= 0;
                l_chunk[lt_i[LOG_PE-1:0]] <= lt_i[LOG_PE-1:0];
                l_used[lt_i[LOG_PE-1:0]] <= 1'b1;
            end else begin
                l_off[lt_i[LOG_PE-1:0]] <= lt_joff[LOG_NB-1:0] + lt_cc[LOG_NB-1:0];
                l_jx[lt_i[LOG_PE-1:0]] <= c_s2 ? {lt_jj[LOG_PE-1:0], 1'b0} : lt_jj;
                l_j[lt_i[LOG_PE-1:0]] <= lt_jj;
                l_chunk[lt_i[LOG_PE-1:0]] <= lt_cc[LOG_PE-1:0];
                l_used[lt_i[LOG_PE-1:0]] <= (jfit <= {16'd0, PE16});
                if (lt_cc == cpp - 1) begin
                    lt_cc <= 0;
                    lt_jj <= lt_jj + 1;
                    lt_joff <= lt_joff + (c_s2 ? {cpp[LOG_NB-1:0], 1'b0} : {1'b0, cpp[LOG_NB-1:0]});
                    if (jfit <= {16'd0, PE16}) lt_jcnt <= lt_jcnt + 1'b1;
                end else
                    lt_cc <= lt_cc + 1;
            end
            if (lt_i == PE_L - 1'b1) lt_busy <= 1'b0;
            lt_i <= lt_i + 1'b1;
        end
    end
    always @(posedge clk) begin
        if (st == ST_RUN && !lt_busy && lt_i == PE_L) begin
            // J and the per-group steps, once the table is complete (before any issue).
            if (dw && cpp < PE16) begin
                grp_j <= {{(15-LOG_PE){1'b0}}, lt_jcnt};
                xstep <= lt_jcnt * cpp * (c_s2 ? 2 : 1);
                ixstep <= lt_jcnt * (c_s2 ? 2 : 1);
            end else begin
                grp_j <= 1;
                xstep <= c_s2 ? {15'd0, cpp, 1'b0} : {16'd0, cpp};
                ixstep <= c_s2 ? 2 : 1;
            end
        end
    end
    always @(posedge clk) if (st == ST_D6) j1 <= dw && (cpp >= PE16);
    // lt_i stays at PE once the table is done
    wire table_done = (lt_i == PE_L) && !lt_busy;

    // ------------------------------------------------------------------ compute (issue, S0)
    localparam [1:0] C_IDLE = 0, C_WAIT = 1, C_RUN = 2, C_END = 3;
    reg [1:0]  cst;
    reg [15:0] oy, ox, g, t, ch;
    reg [3:0]  ky, kx;
    reg signed [17:0] iy0, ix0;
    reg [LOG_CAP-1:0] ybase, kyoff, xbase, kxoff, gbase, tsel;
    reg [31:0] waddr, wtile;   // weight address of the step; first row of the tile (ws)
    reg [15:0] tile_lin;
    reg [16:0] need_rows;
    wire adv_f;                // the front pipeline (issue .. accumulate) advances
    wire adv_b;                // the back pipeline (unload .. output FIFO) advances
    wire rows_ready = (rows_written >= need_rows);
    wire w_ok = !ws || (wph == WP_DRAIN) || (waddr < wr_addr);  // ws: the step's row is in
    wire issue = (cst == C_RUN) && rows_ready && w_ok && adv_f;
    assign stat_mac = issue;

    wire last_ch = (ch == chunks_g - 1);
    wire last_kx = (kx == c_k - 1);
    wire last_ky = (ky == c_k - 1);
    wire last_t = (t == tiles_g - 1);
    wire last_g = (g == ngroups - 1);
    wire last_ox = (ox + grp_j >= ow);
    wire last_oy = (oy == oh - 1);
    wire op_first = (ch == 0) && (kx == 0) && (ky == 0);
    wire op_last = last_ch && last_kx && last_ky;
    wire op_tiles_end = op_last && last_t && last_g;         // normal order: pixel complete
    wire op_map_end = op_last && last_ox && last_oy;          // ws order: tile complete
    wire op_pix_end = ws ? op_last : op_tiles_end;            // output word ends a byte run
    wire op_end = op_tiles_end && last_ox && last_oy;
    wire signed [17:0] iy = iy0 + $signed({14'd0, ky});
    wire signed [17:0] ixk = ix0 + $signed({14'd0, kx});
    wire row_pad = (iy < 0) || (iy >= $signed({2'b00, c_h}));
    wire [LOG_CAP-1:0] wsel = dw ? tsel : gbase + ch[LOG_CAP-1:0];
    wire [LOG_CAP-1:0] baddr = ybase + kyoff + xbase + kxoff + wsel;
    localparam [NVW-1:0] PE_V = PE[NVW-1:0];
    localparam [NVW-1:0] RQ_V = RQ[NVW-1:0];
    wire [NVW-1:0] op_nvalid = last_t ? last_nvalid[NVW-1:0] : PE_V;
    wire signed [17:0] iy0_next = iy0 + (c_s2 ? 2 : 1);
    wire signed [17:0] need_next = iy0_next + $signed({14'd0, c_k});
    wire [31:0] ystep = c_s2 ? {row_words[30:0], 1'b0} : row_words;

    // Per-lane: bank of the lane's word, padding, and whether the lane computes a real output.
    reg [PE*LOG_NB-1:0] op_sel;
    reg [PE-1:0] op_padl, op_lvalid;
    integer lp;
    always @* begin
        for (lp = 0; lp < PE; lp = lp + 1) begin
            op_sel[lp*LOG_NB +: LOG_NB] = baddr[LOG_NB-1:0] + (dw ? l_off[lp] : {LOG_NB{1'b0}});
            op_padl[lp] = row_pad || (ixk + $signed({{(17-LOG_PE){1'b0}}, dw ? l_jx[lp] : {(LOG_PE+1){1'b0}}}) < 0)
                          || (ixk + $signed({{(17-LOG_PE){1'b0}}, dw ? l_jx[lp] : {(LOG_PE+1){1'b0}}})
                              >= $signed({2'b00, c_w}));
            op_lvalid[lp] = l_used[lp] && (ox + {{(15-LOG_PE){1'b0}}, l_j[lp]} < ow)
                            && (!j1 || ({t[15-LOG_PE:0], {LOG_PE{1'b0}}} + lp[15:0] < cpp));
        end
    end

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            cst <= C_IDLE;
            free_all <= 1'b0;
        end else begin
            case (cst)
                C_IDLE: begin
                    oy <= 0; ox <= 0; g <= 0; t <= 0; ch <= 0; ky <= 0; kx <= 0;
                    iy0 <= -$signed({14'd0, c_pt});
                    ix0 <= -$signed({14'd0, c_pl});
                    low_lin <= -$signed({2'b00, low_lin0});
                    ybase <= ybase0_init;
                    xbase <= xbase0;
                    kyoff <= 0; kxoff <= 0; gbase <= 0; tsel <= 0; waddr <= 0; wtile <= 0;
                    tile_lin <= 0;
                    need_rows <= ws ? 17'd0 : (({13'd0, c_k} - {13'd0, c_pt}) > {1'b0, c_h}) ? {1'b0, c_h}
                                                : ({13'd0, c_k} - {13'd0, c_pt});
                    cst <= C_WAIT;
                end
                C_WAIT: if ((ws ? (wph == WP_WEIGHT || wph == WP_DRAIN) : (wph == WP_ACT || wph == WP_DRAIN))
                            && table_done) cst <= C_RUN;
                C_RUN: if (issue && ws) begin
                    // ws order (group, tile, oy, ox, ky, kx, chunk): the tile's weights stream in
                    // while its first output pixel computes.
                    waddr <= !op_last ? waddr + 1 : (op_map_end ? wtile + {16'd0, kkc} : wtile);
                    if (!last_ch) ch <= ch + 1;
                    else begin
                        ch <= 0;
                        if (!last_kx) begin kx <= kx + 1; kxoff <= kxoff + cpp[LOG_CAP-1:0]; end
                        else begin
                            kx <= 0; kxoff <= 0;
                            if (!last_ky) begin ky <= ky + 1; kyoff <= kyoff + row_words[LOG_CAP-1:0]; end
                            else begin
                                ky <= 0; kyoff <= 0;
                                if (!last_ox) begin
                                    ox <= ox + 1;
                                    ix0 <= ix0 + $signed(ixstep);
                                    xbase <= xbase + xstep[LOG_CAP-1:0];
                                end else begin
                                    ox <= 0;
                                    ix0 <= -$signed({14'd0, c_pl});
                                    xbase <= xbase0;
                                    if (!last_oy) begin
                                        oy <= oy + 1;
                                        iy0 <= iy0_next;
                                        ybase <= ybase + ystep[LOG_CAP-1:0];
                                    end else begin
                                        oy <= 0;
                                        iy0 <= -$signed({14'd0, c_pt});
                                        ybase <= ybase0_init;
                                        wtile <= wtile + {16'd0, kkc};
                                        tile_lin <= tile_lin + 1;
                                        if (!last_t) t <= t + 1;
                                        else begin
                                            t <= 0;
                                            if (!last_g) begin
                                                g <= g + 1;
                                                gbase <= gbase + chunks_g[LOG_CAP-1:0];
                                            end else begin
                                                cst <= C_END;
                                                free_all <= 1'b1;
                                            end
                                        end
                                    end
                                end
                            end
                        end
                    end
                end else if (issue) begin
                    waddr <= op_pix_end ? 0 : waddr + 1;
                    if (!last_ch) ch <= ch + 1;
                    else begin
                        ch <= 0;
                        if (!last_kx) begin kx <= kx + 1; kxoff <= kxoff + cpp[LOG_CAP-1:0]; end
                        else begin
                            kx <= 0; kxoff <= 0;
                            if (!last_ky) begin ky <= ky + 1; kyoff <= kyoff + row_words[LOG_CAP-1:0]; end
                            else begin
                                ky <= 0; kyoff <= 0;
                                if (!last_t) begin
                                    t <= t + 1; tile_lin <= tile_lin + 1;
                                    tsel <= tsel + PE_C;
                                end else begin
                                    t <= 0; tsel <= 0;
                                    if (!last_g) begin
                                        g <= g + 1; tile_lin <= tile_lin + 1;
                                        gbase <= gbase + chunks_g[LOG_CAP-1:0];
                                    end else begin
                                        g <= 0; gbase <= 0; tile_lin <= 0;
                                        if (!last_ox) begin
                                            ox <= ox + grp_j;
                                            ix0 <= ix0 + $signed(ixstep);
                                            xbase <= xbase + xstep[LOG_CAP-1:0];
                                        end else begin
                                            ox <= 0;
                                            ix0 <= -$signed({14'd0, c_pl});
                                            xbase <= xbase0;
                                            if (!last_oy) begin
                                                oy <= oy + 1;
                                                iy0 <= iy0_next;
                                                low_lin <= low_lin + $signed({2'b00, ystep});
                                                ybase <= ybase + ystep[LOG_CAP-1:0];
                                                need_rows <= (need_next > $signed({2'b00, c_h}))
                                                             ? {1'b0, c_h} : need_next[16:0];
                                            end else begin
                                                cst <= C_END;
                                                free_all <= 1'b1;
                                            end
                                        end
                                    end
                                end
                            end
                        end
                    end
                end
                default: ;
            endcase
        end
    end

    // ------------------------------------------------------------------ line buffer, S1
    // Bank b holds words w with w mod NB == b. A step reads the NB consecutive words from its
    // base: bank b at row (base >> LOG_NB) + (b < base mod NB); lane i takes bank sel[i].
    wire [SIMD*8-1:0] bank_q [0:NB-1];
    genvar bk;
    generate
        for (bk = 0; bk < NB; bk = bk + 1) begin : bank
            localparam [LOG_NB-1:0] BK_N = bk;
            wire [LOG_NB:0] bk_lt = {1'b0, BK_N} - {1'b0, baddr[LOG_NB-1:0]};   // borrow: bk < base
            reg [SIMD*8-1:0] mem [0:(1 << LOG_BD)-1];
            reg [SIMD*8-1:0] q;
            wire [LOG_BD-1:0] ra = baddr[LOG_CAP-1:LOG_NB]
                                   + {{(LOG_BD-1){1'b0}}, bk_lt[LOG_NB]};
            always @(posedge clk) begin
                if (lb_we && wr_ptr[LOG_NB-1:0] == bk) mem[wr_ptr[LOG_CAP-1:LOG_NB]] <= gb_word[SIMD*8-1:0];
                if (adv_f) q <= mem[ra];
            end
            assign bank_q[bk] = q;
        end
    endgenerate

    // Step flags through the front pipeline: S1 (memories), S2 (lane words), S3 (products),
    // S4 (partial sums; depthwise accumulate), S5 (word sums), S6 (accumulate).
    reg v1, first1, last1, pixend1, end1;
    reg [PE*LOG_NB-1:0] sel1;
    reg [PE-1:0] padl1, lval1;
    reg [TA-1:0] tile1;
    reg [NVW-1:0] nv1;
    reg [15:0] ox1, t1;
    reg v2, first2, last2, pixend2, end2;
    reg [PE-1:0] lval2;
    reg [TA-1:0] tile2;
    reg [NVW-1:0] nv2;
    reg [15:0] ox2, t2;
    reg v3, first3, last3, pixend3, end3;
    reg [PE-1:0] lval3;
    reg [TA-1:0] tile3;
    reg [NVW-1:0] nv3;
    reg [15:0] ox3, t3;
    reg v4, first4, last4, pixend4, end4;
    reg [PE-1:0] lval4;
    reg [TA-1:0] tile4;
    reg [NVW-1:0] nv4;
    reg [15:0] ox4, t4;
    reg v5, first5, last5, pixend5, end5;
    reg [TA-1:0] tile5;
    reg [NVW-1:0] nv5;
    reg v6, last6, pixend6, end6;
    reg [TA-1:0] tile6;
    reg [NVW-1:0] nv6;

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            v1 <= 0; v2 <= 0; v3 <= 0; v4 <= 0; v5 <= 0; v6 <= 0;
        end else if (adv_f) begin
            v1 <= issue; first1 <= op_first; last1 <= op_last; pixend1 <= op_pix_end;
            end1 <= op_end; tile1 <= tile_lin[TA-1:0]; nv1 <= op_nvalid; sel1 <= op_sel;
            padl1 <= op_padl; lval1 <= op_lvalid; ox1 <= ox; t1 <= t;
            v2 <= v1; first2 <= first1; last2 <= last1; pixend2 <= pixend1; end2 <= end1;
            tile2 <= tile1; nv2 <= nv1; lval2 <= lval1; ox2 <= ox1; t2 <= t1;
            v3 <= v2; first3 <= first2; last3 <= last2; pixend3 <= pixend2; end3 <= end2;
            tile3 <= tile2; nv3 <= nv2; lval3 <= lval2; ox3 <= ox2; t3 <= t2;
            v4 <= v3; first4 <= first3; last4 <= last3; pixend4 <= pixend3; end4 <= end3;
            tile4 <= tile3; nv4 <= nv3; lval4 <= lval3; ox4 <= ox3; t4 <= t3;
            v5 <= v4 && !dw; first5 <= first4; last5 <= last4; pixend5 <= pixend4; end5 <= end4;
            tile5 <= tile4; nv5 <= nv4;
            v6 <= v5; last6 <= last5; pixend6 <= pixend5; end6 <= end5; tile6 <= tile5; nv6 <= nv5;
        end
    end

    // Snapshot event: a depthwise group completes at S4, a dense output at S6.
    wire ev_dw = dw && v4 && last4;
    wire ev_dn = !dw && v6 && last6;
    wire ev = ev_dw || ev_dn;

    // ------------------------------------------------------------------ PE lanes
    wire [PE*32-1:0] dacc_bus;                 // dense accumulators at the snapshot
    wire [PE*CH*AWD-1:0] wacc_bus;             // depthwise accumulators at the snapshot
    genvar pe, e;
    generate
        for (pe = 0; pe < PE; pe = pe + 1) begin : lane
            reg [SIMD*8-1:0] wmem [0:MAX_WDEPTH-1];
            reg [SIMD*8-1:0] w1, w2, a2;
            always @(posedge clk) begin
                if (gb_take && wph == WP_WEIGHT && ((dw && !j1) ? (l_used[pe] && {1'b0, l_chunk[pe]} == wr_lane[LOG_PE:0])
                                                                 : (wr_lane == pe)))
                    wmem[wr_addr[WA-1:0]] <= gb_word[SIMD*8-1:0];
                if (adv_f) begin
                    w1 <= wmem[waddr[WA-1:0]];
                    w2 <= w1;
                    a2 <= padl1[pe] ? {SIMD*8{1'b0}} : bank_q[sel1[pe*LOG_NB +: LOG_NB]];
                end
            end

            // S3: products of the CH elements of the word (ohq_mul_word, below).
            reg [CH*PW-1:0] prod3;
            wire [CH*PW-1:0] pr_bus;
            ohq_mul_word #(.BITS(BITS), .CH(CH), .LUT_MULS(LUT_MULS)) u_mul (
                .x(a2[CH*BITS-1:0]), .w(w2[CH*BITS-1:0]), .x_signed(c_in_signed), .p(pr_bus));
            always @(posedge clk) if (adv_f) prod3 <= pr_bus;
            for (e = 0; e < CH; e = e + 1) begin : mul

                // Depthwise: element-wise accumulate into S4 (no wrap: <= 49 products).
                reg signed [AWD-1:0] dacc;
                wire signed [PW-1:0] pe_p = prod3[e*PW +: PW];
                wire signed [AWD-1:0] pe_x = {{(AWD-PW){pe_p[PW-1]}}, pe_p};
                always @(posedge clk) if (adv_f && dw && v3) dacc <= first3 ? pe_x : dacc + pe_x;
                assign wacc_bus[(pe*CH+e)*AWD +: AWD] = dacc;
            end

            // S4: partial sums of GS products; S5: the word sum (two adder-tree stages).
            reg signed [(PW+2)*NG-1:0] ps_c, ps4;
            integer q, r;
            always @* begin
                ps_c = {(PW+2)*NG{1'b0}};
                for (q = 0; q < NG; q = q + 1)
                    for (r = 0; r < GS; r = r + 1)
                        ps_c[q*(PW+2) +: PW+2] = ps_c[q*(PW+2) +: PW+2]
                                                 + {{2{prod3[(q*GS+r)*PW + PW - 1]}}, prod3[(q*GS+r)*PW +: PW]};
            end
            always @(posedge clk) if (adv_f) ps4 <= ps_c;
            reg signed [SW-1:0] sum_c, sum5;
            integer i;
            always @* begin
                sum_c = 0;
                for (i = 0; i < NG; i = i + 1)
                    sum_c = sum_c + {{(SW-PW-2){ps4[i*(PW+2) + PW + 1]}}, ps4[i*(PW+2) +: PW+2]};
            end
            always @(posedge clk) if (adv_f) sum5 <= sum_c;

            // S6: accumulate (int32, wrapping).
            reg signed [31:0] acc;
            wire signed [31:0] sum5x = {{(32-SW){sum5[SW-1]}}, sum5};
            always @(posedge clk) if (adv_f && v5) acc <= first5 ? sum5x : acc + sum5x;
            assign dacc_bus[pe*32 +: 32] = acc;
        end
    endgenerate

    // ------------------------------------------------------------------ unload (back pipeline)
    // A snapshot of the accumulators is unloaded as words of up to RQ outputs: one word per dense
    // output (pixel x tile), U words per depthwise group (lane by lane, RQ elements a word).
    reg [PE*32-1:0] s_dn;
    reg [PE*CH*AWD-1:0] s_dw;
    reg ub_busy, ub_dw, ub_end, ub_pixend;
    reg [LOG_U-1:0] ub_u;
    reg [PE-1:0] ub_lval;
    reg [15:0] ub_ox, ub_t;
    reg [TA-1:0] ub_tile;
    reg [NVW-1:0] ub_nv;
    localparam [31:0] U_LAST32 = U - 1;
    localparam [LOG_U-1:0] U_LAST = U_LAST32[LOG_U-1:0];
    wire ub_lastw = ub_dw ? (ub_u == U_LAST) : 1'b1;
    wire ub_free = !ub_busy || (ub_lastw && adv_b);
    wire block = ev && !ub_free;
    assign adv_f = !block;

    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            ub_busy <= 1'b0;
        end else begin
            if (ub_busy && adv_b) begin
                if (ub_lastw) ub_busy <= 1'b0;
                ub_u <= ub_u + 1;
            end
            if (ev && ub_free) begin
                ub_busy <= 1'b1;
                ub_u <= 0;
                ub_dw <= dw;
                if (dw) begin
                    s_dw <= wacc_bus;
                    ub_lval <= lval4; ub_ox <= ox4; ub_t <= t4; ub_end <= end4;
                end else begin
                    s_dn <= dacc_bus;
                    ub_tile <= tile6; ub_nv <= nv6; ub_end <= end6; ub_pixend <= pixend6;
                end
            end
        end
    end

    // The word being unloaded.
    // ub_u = lane * WPL + word (both powers of two).
    wire [LOG_PE-1:0] u_lane = ub_u[LOG_WPL +: LOG_PE];
    wire [15:0] u_wi = (WPL > 1) ? {{(16-LOG_U){1'b0}}, ub_u & U_WMASK} : 16'd0;
    wire [15:0] u_chunk = (j1 ? {ub_t[15-LOG_PE:0], {LOG_PE{1'b0}}} : 16'd0)
                          + {{(16-LOG_PE){1'b0}}, l_chunk[u_lane]};
    wire [31:0] u_cbase = {{(16-LOG_CH){1'b0}}, u_chunk, {LOG_CH{1'b0}}} + ({16'd0, u_wi} << LOG_RQ);
    wire [31:0] u_left = (u_cbase < {16'd0, c_cin}) ? {16'd0, c_cin} - u_cbase : 32'd0;
    wire [NVW-1:0] u_nv_dw = !ub_lval[u_lane] ? {NVW{1'b0}}
                             : ((u_left >= RQ32) ? RQ_V : u_left[NVW-1:0]);
    wire u_pixend_dw = (u_cbase + RQ >= c_cin) && (u_nv_dw != 0);
    wire u_end_dw = ub_end && u_pixend_dw && (ub_ox + {{(15-LOG_PE){1'b0}}, l_j[u_lane]} == ow - 16'd1);
    wire [15:0] u_paddr_dw = (u_chunk << LOG_WPL) + u_wi;
    // Word u of a depthwise snapshot: elements u*RQ .. u*RQ+RQ-1 of the (lane, element) order.
    wire [RQ*AWD-1:0] u_word;
    genvar uw;
    generate
        if (DW_OK != 0) begin : unload
            wire [RQ*AWD-1:0] s_word [0:U-1];
            for (uw = 0; uw < U; uw = uw + 1) begin : word
                assign s_word[uw] = s_dw[uw*RQ*AWD +: RQ*AWD];
            end
            assign u_word = s_word[ub_u[LOG_U-2:0]];
        end else begin : no_unload
            assign u_word = {RQ*AWD{1'b0}};
            wire _unused_ok = &{1'b0, s_dw, 1'b0};
        end
    endgenerate
    reg [RQ*32-1:0] u_vals;
    integer ur;
    always @* begin
        u_vals = {RQ*32{1'b0}};
        for (ur = 0; ur < RQ; ur = ur + 1) begin
            if (ub_dw)
                u_vals[ur*32 +: 32] = {{(32-AWD){u_word[ur*AWD + AWD - 1]}}, u_word[ur*AWD +: AWD]};
            else if (ur < PE)
                u_vals[ur*32 +: 32] = s_dn[(ur % PE)*32 +: 32];
        end
    end
    wire [NVW-1:0] u_nv = ub_dw ? u_nv_dw : ub_nv;

    // R1: word registered, param read issued; R2: + bias; R3: * mult + round; R4: shift, clamp.
    reg r1_v, r1_pixend, r1_end;
    reg [NVW-1:0] r1_nv;
    reg [TA-1:0] r1_paddr;
    reg [RQ*32-1:0] r1_vals;
    reg r2_v, r2_pixend, r2_end, r3_v, r3_pixend, r3_end, r4_v, r4_pixend, r4_end;
    reg [NVW-1:0] r2_nv, r3_nv, r4_nv;
    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            r1_v <= 0; r2_v <= 0; r3_v <= 0; r4_v <= 0;
        end else if (adv_b) begin
            r1_v <= ub_busy && (u_nv != 0);
            r1_nv <= u_nv;
            r1_pixend <= ub_dw ? u_pixend_dw : ub_pixend;
            r1_end <= ub_dw ? u_end_dw : ub_end;
            r1_paddr <= ub_dw ? u_paddr_dw[TA-1:0] : ub_tile;
            r1_vals <= u_vals;
            r2_v <= r1_v; r2_nv <= r1_nv; r2_pixend <= r1_pixend; r2_end <= r1_end;
            r3_v <= r2_v; r3_nv <= r2_nv; r3_pixend <= r2_pixend; r3_end <= r2_end;
            r4_v <= r3_v; r4_nv <= r3_nv; r4_pixend <= r3_pixend; r4_end <= r3_end;
        end
    end

    wire [RQ*8-1:0] res_bus;
    genvar rq;
    generate
        for (rq = 0; rq < RQ; rq = rq + 1) begin : requant
            reg [63:0] pmem [0:MAX_TILES-1];
            reg [63:0] prm2;
            reg signed [31:0] rv2;
            reg signed [31:0] a3;
            reg [15:0] mult3;
            reg [5:0] shift3;
            reg signed [48:0] p4;
            reg [5:0] shift4;
            reg [7:0] res5;
            always @(posedge clk) begin
                if (gb_take && wph == WP_PARAM && wr_lane == rq) pmem[wr_addr[TA-1:0]] <= gb_word[63:0];
                if (adv_b) begin
                    prm2 <= pmem[r1_paddr];
                    rv2 <= r1_vals[rq*32 +: 32];
                end
            end
            wire signed [31:0] bias2 = prm2[31:0];
            wire signed [48:0] rnd3 = (shift3 == 0) ? 49'sd0 : (49'sd1 <<< (shift3 - 1));
            wire signed [48:0] y4 = p4 >>> shift4;
            wire signed [48:0] yr4 = (c_relu && y4 < 0) ? 49'sd0 : y4;
            wire signed [48:0] hi4 = c_ob8 ? (c_out_signed ? 49'sd127 : 49'sd255)
                                           : (c_out_signed ? 49'sd7 : 49'sd15);
            wire signed [48:0] lo4 = !c_out_signed ? 49'sd0 : (c_ob8 ? -49'sd128 : -49'sd8);
            wire signed [48:0] yc4 = (yr4 > hi4) ? hi4 : ((yr4 < lo4) ? lo4 : yr4);
            always @(posedge clk) if (adv_b) begin
                a3 <= rv2 + bias2;
                mult3 <= prm2[47:32];
                shift3 <= prm2[53:48];
                p4 <= a3 * $signed({1'b0, mult3}) + rnd3;
                shift4 <= shift3;
                res5 <= yc4[7:0];
            end
            assign res_bus[rq*8 +: 8] = res5;
            wire _unused_ok = &{1'b0, prm2[63:54], yc4[48:8], 1'b0};  // reserved byte; clamped
        end
    endgenerate
    reg r5_v, r5_pixend, r5_end;
    reg [NVW-1:0] r5_nv;
    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) r5_v <= 0;
        else if (adv_b) begin
            r5_v <= r4_v; r5_nv <= r4_nv; r5_pixend <= r4_pixend; r5_end <= r4_end;
        end
    end

    // ------------------------------------------------------------------ output FIFO, packer
    localparam integer FD = 8;
    localparam integer FEW = RQ * 8 + NVW + 2;
    reg [FEW-1:0] fifo [0:FD-1];
    reg [3:0] f_wp, f_rp, f_cnt;
    wire f_full = (f_cnt == 4'd8);
    assign adv_b = !f_full;
    wire f_push = adv_b && r5_v;
    wire pk_ready;
    wire f_pop = (f_cnt != 0) && pk_ready;
    wire [FEW-1:0] f_head = fifo[f_rp[2:0]];
    always @(posedge clk) begin
        if (!rst_n || st != ST_RUN) begin
            f_wp <= 0; f_rp <= 0; f_cnt <= 0;
        end else begin
            if (f_push) begin
                fifo[f_wp[2:0]] <= {r5_end, r5_pixend, r5_nv, res_bus};
                f_wp <= f_wp + 1;
            end
            if (f_pop) f_rp <= f_rp + 1;
            f_cnt <= f_cnt + {3'd0, f_push} - {3'd0, f_pop};
        end
    end

    ohq_out_packer #(.PE(RQ), .BUS_BYTES(BUS_BYTES)) u_packer (
        .clk(clk), .rst_n(rst_n), .clear(st != ST_RUN), .ob8(c_ob8),
        .in_data(f_head[RQ*8-1:0]), .in_nvalid(f_head[RQ*8 +: NVW]),
        .in_pix_end(f_head[RQ*8+NVW]), .in_last(f_head[RQ*8+NVW+1]),
        .in_valid(f_cnt != 0), .in_ready(pk_ready),
        .m_tdata(m_tdata), .m_tvalid(m_tvalid), .m_tready(m_tready), .m_tlast(m_tlast));
    assign stat_out_stall = m_tvalid && !m_tready;

    // ------------------------------------------------------------------ control
    reg out_done;
    wire in_done = (beats_in == in_beats);
    always @(posedge clk) begin
        done_pulse <= 1'b0;
        ready_pulse <= 1'b0;
        if (!rst_n) begin
            st <= ST_IDLE;
            busy <= 1'b0;
            in_beats <= 0;
            out_done <= 1'b0;
        end else begin
            case (st)
                ST_IDLE: if (start) begin
                    c_cin <= cfg_cin; c_cout <= cfg_cout; c_h <= cfg_h; c_w <= cfg_w;
                    c_k <= cfg_k; c_s2 <= (cfg_stride == 2); c_pt <= cfg_pad_t; c_pl <= cfg_pad_l;
                    c_pb <= cfg_pad_b; c_pr <= cfg_pad_r; c_groups <= cfg_groups;
                    c_in_signed <= cfg_in_signed; c_ob8 <= (cfg_out_bits == 8);
                    c_out_signed <= cfg_out_signed; c_relu <= cfg_relu;
                    div_na <= cfg_cin; div_nb <= cfg_cout; div_ra <= 0; div_rb <= 0;
                    div_i <= 0;
                    busy <= 1'b1;
                    out_done <= 1'b0;
                    ready_pulse <= 1'b1;
                    // groups = 1 (dense, FC): the quotients are cin and cout; depthwise
                    // (groups = cin = cout): 1 and 1. Only other grouped layers divide.
                    if (cfg_groups == 16'd1) begin
                        div_qa <= cfg_cin; div_qb <= cfg_cout;
                        st <= ST_D1;
                    end else if (cfg_groups == cfg_cin && cfg_groups == cfg_cout) begin
                        div_qa <= 16'd1; div_qb <= 16'd1;
                        st <= ST_D1;
                    end else begin
                        div_qa <= 0; div_qb <= 0;
                        st <= ST_DIV;
                    end
                end
                ST_DIV: begin   // restoring division: cin / groups, cout / groups
                    div_na <= div_na << 1;
                    div_nb <= div_nb << 1;
                    if (div_ra_s >= div_d) begin div_ra <= div_ra_s[15:0] - div_d[15:0]; div_qa <= {div_qa[14:0], 1'b1}; end
                    else begin div_ra <= div_ra_s[15:0]; div_qa <= {div_qa[14:0], 1'b0}; end
                    if (div_rb_s >= div_d) begin div_rb <= div_rb_s[15:0] - div_d[15:0]; div_qb <= {div_qb[14:0], 1'b1}; end
                    else begin div_rb <= div_rb_s[15:0]; div_qb <= {div_qb[14:0], 1'b0}; end
                    div_i <= div_i + 1;
                    if (div_i == 15) st <= ST_D1;
                end
                ST_D1: begin
                    dw <= dw_c;
                    ngroups <= dw_c ? 16'd1 : c_groups;
                    cout_g <= dw_c ? c_cout : div_qb;
                    cpp <= dw_c ? (c_cin + CHM1) >> LOG_CH : c_groups * ((div_qa + CHM1) >> LOG_CH);
                    chunks_g <= dw_c ? 16'd1 : (div_qa + CHM1) >> LOG_CH;
                    tiles_g <= (div_qb + PEM1) >> LOG_PE;
                    kk <= c_k * c_k;
                    oh <= oh_n[15:0];
                    ow <= ow_n[15:0];
                    st <= ST_D2;
                end
                ST_D2: begin
                    if (dw) tiles_g <= (cpp < PE16) ? 16'd1 : (cpp + PEM1) >> LOG_PE;
                    ntiles <= dw ? ((cpp < PE16) ? 16'd1 : (cpp + PEM1) >> LOG_PE) : c_groups * tiles_g;
                    kkc <= kk * chunks_g;
                    rpt <= dw ? kk : kk * chunks_g;
                    last_nvalid <= cout_g - ((tiles_g - 1) << LOG_PE);
                    row_words <= c_w * cpp;
                    st <= ST_D3;
                end
                ST_D3: begin
                    wpl <= ntiles * kkc;
                    xbase0 <= xbase0_n[LOG_CAP-1:0];
                    ybase0_init <= ybase0_n[LOG_CAP-1:0];
                    low_lin0 <= c_pt * row_words;
                    n_prow <= dw ? {16'd0, cpp} << LOG_WPL : {16'd0, ntiles};
                    wwords <= dw ? kk * cpp : kkc * c_cout;
                    st <= ST_D4;
                end
                ST_D4: begin
                    act_words <= c_h * row_words;
                    n_rec <= n_prow * npr;
                    st <= ST_D5;
                end
                ST_D5: begin
                    // Weight streaming when the whole map fits the line buffer and its
                    // activations are no more than the weights.
                    ws <= !dw && (act_words <= CAP) && (act_words <= wwords);
                    in_bytes <= (n_rec << 3) + ((wwords + act_words) << LOG_SIMD);
                    st <= ST_D6;
                end
                ST_D6: begin
                    in_beats <= (in_bytes + BUS_BYTES - 1) >> LOG_BUS;
                    st <= ST_RUN;
                end
                ST_RUN: begin
                    if (m_tvalid && m_tready && m_tlast) out_done <= 1'b1;
                    if (out_done && in_done && cst == C_END) begin
                        st <= ST_IDLE;
                        busy <= 1'b0;
                        done_pulse <= 1'b1;
                    end
                end
                default: st <= ST_IDLE;
            endcase
        end
    end
    // Upper bits that wrap by design (line-buffer addresses are mod CAP) or cannot be set.
    wire _unused_ok = &{1'b0, oh_n[16], ow_n[16], xbase0_n[31:LOG_CAP], ybase0_n[31:LOG_CAP],
                        xstep[31:LOG_CAP], ub_t[15:16-LOG_PE], u_paddr_dw[15:TA], 1'b0};
endmodule
`default_nettype wire
