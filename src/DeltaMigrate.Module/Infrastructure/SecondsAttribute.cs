using System.Globalization;
using System.Management.Automation;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>Lets a TimeSpan parameter take a plain number of seconds.</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class SecondsAttribute : ArgumentTransformationAttribute
{
    public override object Transform(EngineIntrinsics engineIntrinsics, object inputData)
    {
        var value = inputData is PSObject pso ? pso.BaseObject : inputData;
        return value switch
        {
            int or long or double or float or decimal => TimeSpan.FromSeconds(Convert.ToDouble(value, CultureInfo.InvariantCulture)),
            _ => inputData,
        };
    }
}
