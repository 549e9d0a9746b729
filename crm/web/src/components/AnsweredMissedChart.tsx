import {
  Bar,
  BarChart,
  CartesianGrid,
  Legend,
  ResponsiveContainer,
  Tooltip,
  XAxis,
  YAxis,
} from "recharts";

export const ANSWERED_COLOUR = "#2f7d4f";
export const MISSED_COLOUR = "#c0392b";

/** Answered and missed calls stacked per key: the reports page's chart and the client
 * card's calls per month draw the same picture from different data. */
export function AnsweredMissedChart(props: {
  data: { answered: number; missed: number }[];
  keyField: string;
  height: number;
  answeredName: string;
  missedName: string;
}) {
  const { data, keyField, height, answeredName, missedName } = props;
  return (
    <ResponsiveContainer width="100%" height={height}>
      <BarChart data={data} margin={{ top: 8, right: 16, bottom: 8, left: 0 }}>
        <CartesianGrid strokeDasharray="3 3" vertical={false} />
        <XAxis dataKey={keyField} />
        <YAxis allowDecimals={false} />
        <Tooltip />
        <Legend />
        <Bar
          dataKey="answered"
          name={answeredName}
          stackId="calls"
          maxBarSize={64}
          fill={ANSWERED_COLOUR}
          isAnimationActive={false}
        />
        <Bar
          dataKey="missed"
          name={missedName}
          stackId="calls"
          maxBarSize={64}
          fill={MISSED_COLOUR}
          isAnimationActive={false}
        />
      </BarChart>
    </ResponsiveContainer>
  );
}
