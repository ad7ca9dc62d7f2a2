using System.Collections;
using System.Globalization;
using System.Management.Automation;
using System.Reflection;
using DeltaMigrate.Engine.Migration;

namespace DeltaMigrate.Module.Infrastructure;

/// <summary>
/// Lets a MigrationResult parameter take a result that was serialized and read back (Import-Clixml of
/// Export-Clixml, Receive-Job, remoting): PowerShell hands over a property bag typed
/// 'Deserialized.DeltaMigrate.Engine.Migration.MigrationResult', rebuilt here into the record, with its
/// rounds and compression counters.
/// </summary>
[AttributeUsage(AttributeTargets.Property | AttributeTargets.Field)]
public sealed class DeserializedResultAttribute : ArgumentTransformationAttribute
{
    private const string DeserializedTypeName = "Deserialized." + nameof(DeltaMigrate) + ".Engine.Migration." + nameof(MigrationResult);

    public override object? Transform(EngineIntrinsics engineIntrinsics, object? inputData)
    {
        if (inputData is PSObject bag && bag.BaseObject is not MigrationResult && bag.TypeNames.Contains(DeserializedTypeName))
        {
            try
            {
                return Rehydrate(bag, typeof(MigrationResult));
            }
            catch (Exception e) when (e is PSInvalidCastException or ArgumentException or TargetInvocationException)
            {
                throw new ArgumentTransformationMetadataException($"The deserialized migration result could not be read back: {e.Message}", e);
            }
        }

        return inputData;
    }

    private static object? Rehydrate(object? value, Type type)
    {
        if (value is null)
        {
            return null;
        }

        var target = Nullable.GetUnderlyingType(type) ?? type;
        var bare = value is PSObject pso ? pso.BaseObject : value;
        if (target.IsInstanceOfType(bare))
        {
            return bare;
        }

        // Not a primitive of the serializer: it arrives as a bag of its properties.
        if (target == typeof(DateTimeOffset) && value is PSObject time &&
            time.Properties["UtcTicks"]?.Value is long utcTicks && time.Properties["Offset"]?.Value is TimeSpan offset)
        {
            return new DateTimeOffset(utcTicks, TimeSpan.Zero).ToOffset(offset);
        }

        if (target.IsGenericType && target.GetGenericTypeDefinition() == typeof(IReadOnlyList<>))
        {
            var element = target.GetGenericArguments()[0];
            var list = (IList)Activator.CreateInstance(typeof(List<>).MakeGenericType(element))!;
            foreach (var item in LanguagePrimitives.GetEnumerable(bare) ?? Array.Empty<object>())
            {
                list.Add(Rehydrate(item, element));
            }

            return list;
        }

        // Only the engine's own records (MigrationResult, MigrationRound, CompressionStats) are rebuilt
        // from a bag, property by property; anything else goes through PowerShell's conversions.
        if (value is PSObject record && target.Assembly == typeof(MigrationResult).Assembly && target.IsClass)
        {
            if (target.GetConstructor(Type.EmptyTypes) is null)
            {
                // A positional record (CodecBytes): its constructor's parameters are its properties.
                var constructor = target.GetConstructors().OrderByDescending(c => c.GetParameters().Length).First();
                return constructor.Invoke(constructor.GetParameters()
                    .Select(p => Rehydrate(record.Properties[p.Name!]?.Value, p.ParameterType)).ToArray());
            }

            var result = Activator.CreateInstance(target)!;
            foreach (var property in target.GetProperties(BindingFlags.Public | BindingFlags.Instance))
            {
                if (property.SetMethod is { IsPublic: true } && record.Properties[property.Name] is { } source)
                {
                    property.SetValue(result, Rehydrate(source.Value, property.PropertyType));
                }
            }

            return result;
        }

        return LanguagePrimitives.ConvertTo(value, target, CultureInfo.InvariantCulture);
    }
}
